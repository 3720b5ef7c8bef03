"""The jobs worker SIGKILLed (with its pool's processes) while it works through a queue of
jobs, then started again as a supervisor would: the jobs it was running are noticed by the
sweep once its heartbeat stops, retried, and every job completes exactly once, charged once."""

import time
import uuid

from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from jobs.models import EventKind, Job, JobEvent, JobStatus
from tests.faults.conftest import TEXT, assert_balance_equals_ledger, wait_for

JOBS = 16


def test_worker_killed_under_load(system, live_org, report):
    live_org.grant(1000)
    api = system.api(live_org.admin)
    # Each answer takes the provider 2 s ("[slow]"): two at a time, the queue lasts ~16 s.
    answers = [api.summarize(f"{TEXT} [slow] {uuid.uuid4().hex}") for _ in range(JOBS)]
    assert [answer.status for answer in answers] == [202] * JOBS
    ids = {answer.body["data"]["id"] for answer in answers}

    def running_after_some_done():
        with tenant_context(live_org):
            done = Job.objects.filter(status=JobStatus.COMPLETED).count()
            running = list(Job.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True))
        return running if done >= 2 and len(running) == 2 else None

    in_flight = wait_for(running_after_some_done, timeout=60, every=0.05, what="two jobs running")
    system.workers["jobs"].kill()
    killed_at = time.monotonic()
    time.sleep(2)
    system.restart_worker("jobs")

    def put_back():
        with tenant_context(live_org):
            return not Job.objects.filter(pk__in=in_flight, status=JobStatus.RUNNING).exists()

    wait_for(put_back, timeout=60, what="the killed worker's jobs put back")
    noticed = time.monotonic() - killed_at

    def all_completed():
        with tenant_context(live_org):
            return Job.objects.filter(pk__in=ids, status=JobStatus.COMPLETED).count() == JOBS

    wait_for(all_completed, timeout=120, what="every job completed")
    recovered = time.monotonic() - killed_at

    with tenant_context(live_org):
        jobs = {str(job.pk): job for job in Job.objects.filter(pk__in=ids)}
        assert len(jobs) == JOBS
        for job_id, job in jobs.items():
            completed = JobEvent.objects.filter(job_id=job_id, kind=EventKind.COMPLETED).count()
            assert completed == 1, job_id
            lost = JobEvent.objects.filter(job_id=job_id, kind=EventKind.ATTEMPT_FAILED)
            if job.pk in in_flight:
                assert job.attempt_count == 2
                assert [event.error for event in lost] == ["The worker running the job stopped."]
            else:
                assert job.attempt_count == 1 and not lost.exists()
        assert CreditTransaction.objects.filter(job_id__in=ids, kind="deduction").count() == JOBS
        assert not CreditTransaction.objects.filter(kind="refund").exists()
    assert_balance_equals_ledger(live_org, 1000 - 10 * JOBS)
    report(
        jobs=JOBS,
        killed_while_running=len(in_flight),
        noticed_and_retried_s=round(noticed, 1),
        all_completed_s=round(recovered, 1),
        completed_twice=0,
        charged=JOBS,
    )
