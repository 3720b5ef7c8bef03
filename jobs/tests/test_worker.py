"""Jobs through a real Celery worker process, the real broker and committed data."""

import itertools
import time

from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from billing.models import CreditTransaction
from billing.selectors import credits_balance, credits_ledger_sum
from jobs import services
from jobs.models import EventKind, Job, JobStatus
from tenants.tests.helpers import bearer_for

TEXT = "The product launch went well. Customers praised the speed. Support tickets fell sharply."


def _wait_for(org, job_id, statuses=(JobStatus.COMPLETED, JobStatus.FAILED), timeout=30.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with tenant_context(org):
            job = Job.objects.get(pk=job_id)
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")


def _events(org, job_id):
    with tenant_context(org):
        return list(Job.objects.get(pk=job_id).events.order_by("created_at", "id"))


def test_api_job_completes_on_the_worker(live_org, celery_worker):
    live_org.grant(100)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(live_org.admin)}")
    job_id = client.post("/api/v1/summarize", {"text": TEXT}, format="json").json()["data"]["id"]
    job = _wait_for(live_org, job_id)
    assert job.status == JobStatus.COMPLETED
    assert job.attempt_count == 1
    assert job.output["summary"]
    assert job.provider == "local"
    data = client.get(f"/api/v1/jobs/{job_id}").json()["data"]
    assert data["status"] == "completed"


def test_transient_failures_retry_three_times_then_fail_and_refund(live_org, celery_worker, settings):
    live_org.grant(100)
    with tenant_context(live_org):
        job = services.job_create(
            user=live_org.admin, job_type="summarize", text=f"{TEXT} [server-error]", provider="gemini"
        )
        assert credits_balance() == 90
    job = _wait_for(live_org, job.pk)
    assert job.status == JobStatus.FAILED
    assert job.attempt_count == 3
    assert "HTTP 500" in job.error_message
    events = _events(live_org, job.pk)
    failures = [e for e in events if e.kind == EventKind.ATTEMPT_FAILED]
    assert [e.attempt for e in failures] == [1, 2, 3]
    starts = [e.created_at for e in events if e.kind == EventKind.STARTED]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= settings.JOB_RETRY_DELAY_SECONDS for gap in gaps), gaps
    with tenant_context(live_org):
        assert credits_balance() == 100 == credits_ledger_sum()
        assert [r.kind for r in CreditTransaction.objects.filter(job_id=job.pk).order_by("sequence")] == [
            "deduction",
            "refund",
        ]


def test_permanent_failure_fails_at_once_and_refunds(live_org, celery_worker):
    live_org.grant(100)
    with tenant_context(live_org):
        job = services.job_create(
            user=live_org.admin, job_type="analyze", text=f"{TEXT} [bad-request]", provider="gemini"
        )
    job = _wait_for(live_org, job.pk)
    assert job.status == JobStatus.FAILED
    assert job.attempt_count == 1
    with tenant_context(live_org):
        assert credits_balance() == 100


def test_worker_killed_mid_job_finishes_the_job_exactly_once(live_org, celery_worker, settings):
    live_org.grant(100)
    with tenant_context(live_org):
        job = services.job_create(
            user=live_org.admin, job_type="summarize", text=f"{TEXT} [slow]", provider="gemini"
        )
    _wait_for(live_org, job.pk, statuses=(JobStatus.RUNNING,))
    celery_worker.kill()  # SIGKILL while the provider call is in flight

    settings.JOB_RUNNING_TIMEOUT_SECONDS = 0
    with tenant_context(live_org):
        assert services.jobs_sweep()["timed_out"] == 1  # back to pending, re-sent
    celery_worker.start()
    job = _wait_for(live_org, job.pk)
    assert job.status == JobStatus.COMPLETED
    assert job.attempt_count == 2
    kinds = [e.kind for e in _events(live_org, job.pk)]
    assert kinds.count(EventKind.COMPLETED) == 1
    with tenant_context(live_org):
        assert credits_balance() == 90 == credits_ledger_sum()
