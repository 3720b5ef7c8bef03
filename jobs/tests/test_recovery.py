"""How the frequent sweep recovers jobs without waiting for timeouts: sends that the broker
refused, retries whose delayed message was lost, and attempts whose worker died."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context
from prometheus_client import REGISTRY

from billing.models import CreditTransaction
from billing.selectors import credits_balance, credits_ledger_sum
from jobs import services
from jobs.models import EventKind, Job, JobEvent, JobStatus
from jobs.tests.factories import job_create
from nexus.tests.live import free_port
from tenants.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture
def org(funded):
    """Runs the test in organisation A's schema; its 100 credits come from `funded`."""
    world = funded
    with tenant_context(world.org_a):
        yield world.org_a


@pytest.fixture
def broker(broker):
    """The root broker, with `sent`: the (args, countdown) of each job message accepted."""
    broker.sent = broker.watch("jobs.run_job", lambda message: (message.args, message.countdown))
    return broker


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _age(job, seconds: float) -> None:
    """Move the job's due time into the past, as if the sweep ran `seconds` later."""
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=seconds))


def test_a_send_refused_by_the_broker_is_counted_and_resent_by_the_next_sweep(
    world, org, broker, settings, django_capture_on_commit_callbacks
):
    failures = _metric("nexus_enqueue_failures_total", task="jobs.run_job")
    resends = _metric("nexus_enqueue_resends_total", task="jobs.run_job", reason="unsent")
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(user=world.member_a)
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.enqueued_at is None
    assert _metric("nexus_enqueue_failures_total", task="jobs.run_job") == failures + 1

    # Still down at the next sweep: the send fails again and the job stays unstamped.
    _age(job, settings.JOB_RESEND_GRACE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["resent"] == 1
    assert Job.objects.get(pk=job.pk).enqueued_at is None
    assert _metric("nexus_enqueue_failures_total", task="jobs.run_job") == failures + 2

    broker.down = False
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["resent"] == 1
    assert broker.sent == [([str(job.pk)], 0)]
    assert Job.objects.get(pk=job.pk).enqueued_at is not None
    assert _metric("nexus_enqueue_resends_total", task="jobs.run_job", reason="unsent") == resends + 1
    # Queued now: the next sweep leaves it to the broker.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["resent"] == 0
    assert len(broker.sent) == 1


def test_a_job_queued_at_creation_is_not_sent_again_by_the_sweep(
    world, org, broker, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(user=world.member_a)
    _age(job, settings.JOB_RESEND_GRACE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["resent"] == 0
    assert broker.sent == [([str(job.pk)], 0)]


def test_a_retry_is_kept_in_the_database_and_sent_by_the_sweep_once_due(
    world, org, broker, settings, django_capture_on_commit_callbacks
):
    settings.JOB_RETRY_DELAY_SECONDS = 5
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(user=world.member_a)
    services.job_claim(job_id=job.pk, worker="w1@host")
    with django_capture_on_commit_callbacks(execute=True):
        services.job_fail(job_id=job.pk, attempt=1, error="HTTP 503", retryable=True)
    job.refresh_from_db()
    assert job.enqueued_at is None
    assert job.worker == "w1@host"
    # The delayed message is only a fast path: it may be lost with its worker or Redis.
    assert broker.sent[-1] == ([str(job.pk)], 5)
    # Not due yet: neither the sweep nor an early message runs it.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["resent"] == 0
    assert services.job_claim(job_id=job.pk) is None
    # Due (and its message lost): the sweep sends it; one claim wins, a duplicate finds nothing.
    _age(job, settings.JOB_RESEND_GRACE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["resent"] == 1
    assert broker.sent[-1] == ([str(job.pk)], 0)
    claimed = services.job_claim(job_id=job.pk, worker="w2@host")
    assert claimed.attempt_count == 2
    assert claimed.worker == "w2@host"
    assert services.job_claim(job_id=job.pk) is None
    kinds = [e.kind for e in job.events.order_by("created_at", "id")]
    assert kinds.count(EventKind.STARTED) == 2
    assert kinds.count(EventKind.REQUEUED) == 1


def _running(world, *, worker: str, attempt: int = 1, started_ago: float = 60) -> Job:
    job = job_create(user=world.member_a)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        attempt_count=attempt,
        worker=worker,
        started_at=timezone.now() - timedelta(seconds=started_ago),
        next_attempt_at=None,
    )
    return job


def _heartbeat(name: str, ago: float) -> None:
    with schema_context("public"):
        WorkerHeartbeat.objects.update_or_create(
            name=name, defaults={"beat_at": timezone.now() - timedelta(seconds=ago)}
        )


def test_a_running_job_whose_worker_stopped_heartbeating_is_retried(world, org, broker, settings):
    dead = _running(world, worker="dead@host")
    alive = _running(world, worker="alive@host")
    _heartbeat("dead@host", ago=settings.JOB_WORKER_DEAD_AFTER_SECONDS + 5)
    _heartbeat("alive@host", ago=1)
    assert services.jobs_sweep()["worker_lost"] == 1
    dead.refresh_from_db()
    assert dead.status == JobStatus.PENDING
    assert dead.attempt_count == 1
    assert dead.error_message == "The worker running the job stopped."
    assert Job.objects.get(pk=alive.pk).status == JobStatus.RUNNING
    assert credits_balance() == 80


def test_a_job_whose_worker_died_on_its_last_attempt_fails_and_is_refunded_once(world, org, broker, settings):
    job = _running(world, worker="gone@host", attempt=3)  # no heartbeat row at all
    assert services.jobs_sweep()["worker_lost"] == 1
    assert services.jobs_sweep()["worker_lost"] == 0
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.failed_at
    assert credits_balance() == 100 == credits_ledger_sum()
    assert CreditTransaction.objects.filter(job_id=job.pk, kind="refund").count() == 1


def test_a_just_claimed_job_is_not_taken_for_orphaned(world, org, broker, settings):
    _running(world, worker="new@host", started_ago=1)
    assert services.jobs_sweep()["worker_lost"] == 0


def test_metrics_export_the_enqueue_counters(client, settings):
    settings.DEBUG = True  # /metrics answers without a token only in development
    body = client.get("/metrics").content.decode()
    assert "nexus_enqueue_failures_total" in body
    assert "nexus_enqueue_resends_total" in body


@pytest.fixture
def restarted_broker(settings, tmp_path):
    """A Redis of this test's own that has just started, as the broker: a Redis restarted
    without persistence, which has lost every message queued before."""
    from tests.faults.servers import EmbeddedRedis

    server = EmbeddedRedis(tmp_path)
    server.create()
    settings.CELERY_BROKER_URL = server.url
    try:
        yield server
    finally:
        server.stop()


def test_a_job_queued_before_the_broker_restarted_is_sent_again_at_once(
    world, org, broker, restarted_broker, settings, django_capture_on_commit_callbacks
):
    resends = _metric("nexus_enqueue_resends_total", task="jobs.run_job", reason="broker_restarted")
    # Redis reports its uptime in whole seconds: a message sent within a second of the
    # restart may be sent once more (harmless), so `kept` is sent clearly after it.
    time.sleep(1.5)
    with django_capture_on_commit_callbacks(execute=True):
        lost = job_create(user=world.member_a)
        kept = job_create(user=world.member_a)
    # `lost` was queued 20 s ago, before this Redis started: its message went with the old
    # one. `kept` was queued now, after it started. Neither is old enough for the
    # not-picked-up rule (JOB_REQUEUE_AFTER_SECONDS).
    assert settings.JOB_REQUEUE_AFTER_SECONDS > 20
    Job.objects.filter(pk=lost.pk).update(enqueued_at=timezone.now() - timedelta(seconds=20))
    broker.sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["requeued"] == 1
    assert broker.sent == [([str(lost.pk)], 0)]
    assert Job.objects.get(pk=lost.pk).enqueued_at > Job.objects.get(pk=kept.pk).enqueued_at
    assert (
        _metric("nexus_enqueue_resends_total", task="jobs.run_job", reason="broker_restarted") == resends + 1
    )
    assert list(
        JobEvent.objects.filter(job_id=lost.pk, kind=EventKind.REQUEUED).values_list("message", flat=True)
    ) == ["queued before the broker restarted, which lost the message; sent again"]
    # Sent again once: the next sweep finds it queued after the restart.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["requeued"] == 0
    assert len(broker.sent) == 1


def test_a_broker_that_does_not_answer_leaves_queued_jobs_to_the_other_rules(
    world, org, broker, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(user=world.member_a)
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=20))
    broker.sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep()["requeued"] == 0
    assert broker.sent == []
