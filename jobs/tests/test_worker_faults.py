"""Faults performed on a real Celery worker: SIGKILL while a job runs, and SIGKILL while a
retry waits for its due time. The test process plays beat, sweeping every
JOB_SWEEP_SECONDS as the periodic task does, and measures how long recovery took."""

import itertools
import time

import pytest
from django.conf import settings as django_settings
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from billing.selectors import credits_balance, credits_ledger_sum
from jobs import services
from jobs.models import EventKind, Job, JobStatus

TEXT = "The product launch went well. Customers praised the speed. Support tickets fell sharply."


def _job(org, job_id) -> Job:
    with tenant_context(org):
        return Job.objects.get(pk=job_id)


def _wait(org, job_id, done, *, timeout: float, sweep: bool = False) -> Job:
    """Poll until `done(job)`, sweeping every JOB_SWEEP_SECONDS when `sweep`; bounded."""
    deadline = time.monotonic() + timeout
    next_sweep = time.monotonic()
    while time.monotonic() < deadline:
        if sweep and time.monotonic() >= next_sweep:
            with tenant_context(org):
                services.jobs_sweep()
            next_sweep += django_settings.JOB_SWEEP_SECONDS
        job = _job(org, job_id)
        if done(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status} (attempt {job.attempt_count}) after {timeout} s")


def _events(org, job_id, kind):
    with tenant_context(org):
        return list(Job.objects.get(pk=job_id).events.filter(kind=kind).order_by("created_at", "id"))


def _ledger(org, job_id):
    with tenant_context(org):
        return [r.kind for r in CreditTransaction.objects.filter(job_id=job_id).order_by("sequence")]


@pytest.fixture
def heartbeating_worker(celery_worker):
    """The shared worker, heartbeating every second (the production period is a few s)."""
    celery_worker.stop()
    celery_worker.extra_env = {**celery_worker.extra_env, "WORKER_HEARTBEAT_SECONDS": "1"}
    celery_worker.start()
    return celery_worker


def test_a_job_whose_worker_is_killed_is_retried_within_30_seconds(live_org, heartbeating_worker):
    live_org.grant(100)
    with tenant_context(live_org):
        job = services.job_create(
            user=live_org.admin, job_type="summarize", text=f"{TEXT} [slow]", provider="gemini"
        )
    running = _wait(live_org, job.pk, lambda j: j.status == JobStatus.RUNNING, timeout=30)
    assert running.worker.startswith("all-")
    heartbeating_worker.kill()  # SIGKILL while the provider call is in flight
    killed_at = time.monotonic()

    _wait(live_org, job.pk, lambda j: j.status == JobStatus.PENDING, timeout=40, sweep=True)
    recovery = time.monotonic() - killed_at
    print(f"dead worker noticed and its job put back after {recovery:.1f} s")
    assert recovery <= 30

    heartbeating_worker.start()
    done = _wait(live_org, job.pk, lambda j: j.status == JobStatus.COMPLETED, timeout=60, sweep=True)
    assert done.attempt_count == 2
    assert done.worker != running.worker
    assert [e.error for e in _events(live_org, job.pk, EventKind.ATTEMPT_FAILED)] == [
        "The worker running the job stopped."
    ]
    assert len(_events(live_org, job.pk, EventKind.COMPLETED)) == 1
    assert _ledger(live_org, job.pk) == ["deduction"]
    with tenant_context(live_org):
        assert credits_balance() == 90 == credits_ledger_sum()


def test_a_retry_pending_when_its_worker_dies_still_runs_on_time(live_org, celery_worker, settings):
    """3 attempts 5 s apart, the worker SIGKILLed while it holds attempt 2's delayed message:
    the retry is in the database, and the sweep sends it within seconds of its due time."""
    delay = 5
    settings.JOB_RETRY_DELAY_SECONDS = delay
    celery_worker.stop()
    celery_worker.extra_env = {**celery_worker.extra_env, "JOB_RETRY_DELAY_SECONDS": str(delay)}
    celery_worker.start()
    live_org.grant(100)
    with tenant_context(live_org):
        job = services.job_create(
            user=live_org.admin, job_type="summarize", text=f"{TEXT} [server-error]", provider="gemini"
        )
    _wait(live_org, job.pk, lambda j: j.status == JobStatus.PENDING and j.attempt_count == 1, timeout=30)
    celery_worker.kill()  # attempt 2's delayed message dies with it (unacknowledged for an hour)
    celery_worker.start()

    failed = _wait(live_org, job.pk, lambda j: j.status == JobStatus.FAILED, timeout=60, sweep=True)
    assert failed.attempt_count == 3
    starts = [e.created_at for e in _events(live_org, job.pk, EventKind.STARTED)]
    retries = _events(live_org, job.pk, EventKind.RETRY_SCHEDULED)
    assert len(starts) == 3
    assert len(retries) == 2
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    print(f"gaps between attempts: {', '.join(f'{gap:.1f} s' for gap in gaps)}")
    # Never early; late by at most the resend grace plus one sweep period (and a margin).
    bound = delay + django_settings.JOB_RESEND_GRACE_SECONDS + django_settings.JOB_SWEEP_SECONDS + 3
    assert all(delay <= gap <= bound for gap in gaps), gaps
    assert _ledger(live_org, job.pk) == ["deduction", "refund"]
    with tenant_context(live_org):
        assert credits_balance() == 100 == credits_ledger_sum()
