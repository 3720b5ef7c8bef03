"""The job state machine: charging, claiming, completing, failing, retrying, refunding."""

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction, TransactionKind
from billing.selectors import credits_balance, credits_ledger_sum
from billing.services import InsufficientCredits, credits_grant
from jobs import services, tasks
from jobs.models import EventKind, Job, JobStatus
from jobs.providers import ProviderResult
from jobs.tests.factories import job_create
from nexus.api.errors import ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def org(funded):
    """Runs the test in organisation A's schema; its 100 credits come from `funded`."""
    world = funded
    with tenant_context(world.org_a):
        yield world.org_a


class Sent(list):
    """(args, countdown) of each task sent; `schemas`, the schema each was sent for."""

    schemas: list


@pytest.fixture
def sent(broker):
    """The jobs the services send (recorded by the root `broker` fixture)."""
    calls = broker.watch("jobs.run_job", lambda message: (message.args, message.countdown), into=Sent())
    calls.schemas = broker.watch("jobs.run_job", lambda message: message.schema)
    return calls


def _kinds(job):
    return [e.kind for e in job.events.order_by("created_at", "id")]


def test_create_charges_and_sends_the_task_on_commit(world, org, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(user=world.member_a)
    assert job.status == JobStatus.PENDING
    assert job.cost == 10
    assert job.attempt_count == 0
    assert credits_balance() == 90
    deduction = CreditTransaction.objects.get(job_id=job.pk)
    assert deduction.kind == TransactionKind.DEDUCTION
    assert deduction.amount == -10
    assert deduction.actor_label == f"user:{world.member_a.email}"
    assert sent == [([str(job.pk)], 0)]
    assert sent.schemas == [world.org_a.schema_name]
    assert _kinds(job) == [EventKind.CREATED]


def test_analyze_costs_25(world, org):
    job_create(user=world.member_a, job_type="analyze")
    assert credits_balance() == 75


def test_not_enough_credits_writes_nothing(world, sent, django_capture_on_commit_callbacks):
    with tenant_context(world.org_a):
        credits_grant(amount=24, reason="seed", actor_label="operator:tests")
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(InsufficientCredits) as caught:
            job_create(user=world.member_a, job_type="analyze")
        assert caught.value.details == {"balance": 24, "required": 25}
        assert Job.objects.count() == 0
        assert CreditTransaction.objects.count() == 1
    assert sent == []


@pytest.mark.parametrize("text", ["", "   \n\t", "x" * 20_001, None, 42])
def test_invalid_text_is_refused_before_anything_is_written(world, org, text):
    with pytest.raises(ValidationFailed):
        job_create(user=world.member_a, text=text)
    assert Job.objects.count() == 0
    assert credits_balance() == 100


def test_text_of_exactly_20000_characters_is_accepted(world, org):
    assert job_create(user=world.member_a, text="a" * 20_000).cost == 10


def test_claim_is_conditional(world, org):
    job = job_create(user=world.member_a)
    claimed = services.job_claim(job_id=job.pk)
    assert claimed.status == JobStatus.RUNNING
    assert claimed.attempt_count == 1
    assert claimed.started_at
    assert services.job_claim(job_id=job.pk) is None
    assert services.job_claim(job_id=uuid.uuid4()) is None


def test_complete_records_the_result_once(world, org):
    job = job_create(user=world.member_a)
    services.job_claim(job_id=job.pk)
    result = ProviderResult(output={"summary": "s"}, provider="local", model="m")
    done = services.job_complete(job_id=job.pk, attempt=1, result=result)
    assert done.status == JobStatus.COMPLETED
    assert done.output == {"summary": "s"}
    assert done.completed_at
    assert services.job_complete(job_id=job.pk, attempt=1, result=result) is None
    assert _kinds(done) == [EventKind.CREATED, EventKind.STARTED, EventKind.COMPLETED]


def test_a_stale_attempt_cannot_complete_the_job(world, org):
    job = job_create(user=world.member_a)
    services.job_claim(job_id=job.pk)
    services.job_fail(job_id=job.pk, attempt=1, error="timeout", retryable=True)
    services.job_claim(job_id=job.pk)  # attempt 2 now owns the job
    result = ProviderResult(output={"summary": "late"}, provider="local", model="m")
    assert services.job_complete(job_id=job.pk, attempt=1, result=result) is None
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_transient_failure_is_retried_with_the_configured_delay(
    world, org, sent, settings, django_capture_on_commit_callbacks
):
    settings.JOB_RETRY_DELAY_SECONDS = 5
    job = job_create(user=world.member_a)
    services.job_claim(job_id=job.pk)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.job_fail(job_id=job.pk, attempt=1, error="HTTP 503", retryable=True)
    assert outcome is services.FailOutcome.RETRY_SCHEDULED
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.error_message == "HTTP 503"
    assert 4.5 < (job.next_attempt_at - timezone.now()).total_seconds() <= 5
    assert sent == [([str(job.pk)], 5)]
    assert credits_balance() == 90


def test_production_retry_delay_is_five_seconds():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "nexus.settings", "NEXUS_TESTING": "true"}
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            "from nexus import settings; print(settings.JOB_RETRY_DELAY_SECONDS, settings.JOB_MAX_ATTEMPTS)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert output == ["5.0", "3"]


def test_three_failed_attempts_fail_the_job_and_refund_in_the_same_transaction(world, org):
    job = job_create(user=world.member_a, provider="always-fails")
    for _ in range(3):
        tasks.run_job(str(job.pk))  # each call is one attempt; the retry message is not sent in tests
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempt_count == 3
    assert job.failed_at
    assert "always fails" in job.error_message
    assert credits_balance() == 100 == credits_ledger_sum()
    rows = CreditTransaction.objects.filter(job_id=job.pk).order_by("sequence")
    assert [(r.kind, r.amount) for r in rows] == [("deduction", -10), ("refund", 10)]
    kinds = _kinds(job)
    assert kinds.count(EventKind.STARTED) == 3
    assert kinds.count(EventKind.ATTEMPT_FAILED) == 3
    assert kinds.count(EventKind.RETRY_SCHEDULED) == 2
    assert kinds[-2:] == [EventKind.FAILED, EventKind.REFUNDED]
    # A fourth delivery of the task finds nothing to do.
    tasks.run_job(str(job.pk))
    assert Job.objects.get(pk=job.pk).attempt_count == 3


def test_permanent_failure_is_not_retried_and_is_refunded(world, org, monkeypatch):
    from jobs.providers import PermanentProviderError
    from jobs.providers.local import LocalProvider

    def refuse(self, job_type, text):
        raise PermanentProviderError("Gemini rejected the request (HTTP 400).")

    monkeypatch.setattr(LocalProvider, "run", refuse)
    job = job_create(user=world.member_a)
    tasks.run_job(str(job.pk))
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.attempt_count == 1
    assert credits_balance() == 100


def test_failing_twice_refunds_once(world, org):
    job = job_create(user=world.member_a)
    services.job_claim(job_id=job.pk)
    first = services.job_fail(job_id=job.pk, attempt=1, error="bad", retryable=False)
    second = services.job_fail(job_id=job.pk, attempt=1, error="bad", retryable=False)
    assert (first, second) == (services.FailOutcome.FAILED, services.FailOutcome.IGNORED)
    assert CreditTransaction.objects.filter(job_id=job.pk, kind="refund").count() == 1
    assert credits_balance() == 100


def test_local_job_runs_to_completion(world, org):
    job = job_create(
        user=world.member_a, text="The launch went well. Customers love the product. Revenue grew."
    )
    tasks.run_job(str(job.pk))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.provider == "local"
    assert job.model == "extractive-v1"
    assert job.output["summary"]


def _swept(**counts: int) -> dict[str, int]:
    return {"resent": 0, "requeued": 0, "worker_lost": 0, "timed_out": 0, **counts}


def test_sweep_requeues_pending_jobs_whose_task_was_lost(
    world, org, sent, settings, django_capture_on_commit_callbacks
):
    job = job_create(user=world.member_a)
    Job.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_sweep() == _swept(resent=1)
    assert sent == [([str(job.pk)], 0)]
    assert EventKind.REQUEUED in _kinds(job)


def test_sweep_leaves_recent_pending_jobs_alone(world, org, sent):
    job_create(user=world.member_a)
    assert services.jobs_sweep() == _swept()


def test_sweep_fails_stuck_running_jobs_and_refunds_on_the_last_attempt(world, org):
    job = job_create(user=world.member_a)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, attempt_count=3, started_at=timezone.now() - timedelta(hours=1)
    )
    assert services.jobs_sweep() == _swept(timed_out=1)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "worker was lost" in job.error_message
    assert credits_balance() == 100


def test_sweep_retries_a_stuck_job_with_attempts_left(world, org):
    job = job_create(user=world.member_a)
    services.job_claim(job_id=job.pk)
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(hours=1))
    services.jobs_sweep()
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.attempt_count == 1
    assert credits_balance() == 90


def test_broker_down_at_commit_leaves_a_pending_job_for_the_sweep(
    world, org, broker, django_capture_on_commit_callbacks
):
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(user=world.member_a)
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert credits_balance() == 90
