"""A retry waiting for its due time when its worker is SIGKILLed: the retry is kept in the
database with its due time, so the next attempts still come 5 s apart, and the job's last
failure refunds it exactly once."""

import itertools
import time

from django.conf import settings
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from jobs.models import EventKind, Job, JobEvent, JobStatus
from tests.faults.conftest import TEXT, assert_balance_equals_ledger, wait_for


def test_a_retry_pending_when_its_worker_dies(system, live_org, report):
    live_org.grant(100)
    api = system.api(live_org.admin)
    answer = api.summarize(f"{TEXT} [server-error]")  # the provider answers 500 every time
    assert answer.status == 202
    job_id = answer.body["data"]["id"]

    def retry_pending():
        with tenant_context(live_org):
            job = Job.objects.get(pk=job_id)
            return job.status == JobStatus.PENDING and job.attempt_count == 1

    wait_for(retry_pending, timeout=30, every=0.05, what="attempt 1 failed, retry pending")
    system.workers["jobs"].kill()  # the retry's delayed message dies with the worker
    killed_at = time.monotonic()
    time.sleep(1)
    system.restart_worker("jobs")

    def failed():
        with tenant_context(live_org):
            return Job.objects.filter(pk=job_id, status=JobStatus.FAILED).exists()

    wait_for(failed, timeout=90, what="the job failed after its last attempt")
    with tenant_context(live_org):
        job = Job.objects.get(pk=job_id)
        starts = list(
            JobEvent.objects.filter(job_id=job_id, kind=EventKind.STARTED).order_by("created_at")
            .values_list("created_at", flat=True)
        )  # fmt: skip
        assert job.attempt_count == 3 and len(starts) == 3
        assert [t.kind for t in CreditTransaction.objects.filter(job_id=job_id).order_by("sequence")] == [
            "deduction",
            "refund",
        ]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    delay = 5
    late_bound = delay + settings.JOB_RESEND_GRACE_SECONDS + settings.JOB_SWEEP_SECONDS + 2
    assert all(delay <= gap <= late_bound for gap in gaps), gaps
    assert_balance_equals_ledger(live_org, 100)
    report(
        attempts=3,
        gaps_s=[round(gap, 1) for gap in gaps],
        promised_gap_s=delay,
        failed_after_kill_s=round(time.monotonic() - killed_at, 1),
        refunds=1,
    )
