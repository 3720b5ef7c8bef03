"""Redis (broker, cache and rate-limit counters) stopped for 30 s while clients submit jobs
and read, then started again empty, as a Redis without persistence comes back: no answer is
a 5xx (jobs are accepted into the database and sent once the broker is back; the limiter
and the cache step aside), and every accepted job completes exactly once, charged once."""

import time
import uuid

from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from jobs.models import EventKind, Job, JobEvent, JobStatus
from tests.faults.conftest import TEXT, Load, assert_balance_equals_ledger, wait_for

OUTAGE_SECONDS = 30


def _submit(api):
    return api.summarize(f"{TEXT} {uuid.uuid4().hex}")


def _read(api):
    return api.call("GET", "/api/v1/jobs?limit=5")


def _running(org, job_id) -> bool:
    with tenant_context(org):
        return Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).exists()


def test_redis_down_for_30_seconds_under_load(system, servers, live_org, report):
    live_org.grant(100_000)
    api = system.api(live_org.admin)
    with (
        Load(api, _submit, threads=2, period=0.3) as writes,
        Load(api, _read, threads=1, period=0.3) as reads,
    ):
        time.sleep(5)
        # A job running when Redis goes: its worker holds an unacknowledged (acks-late)
        # message, the case that used to make Celery's consumer exit instead of reconnecting.
        held = api.summarize(f"{TEXT} [slow] {uuid.uuid4().hex}")
        assert held.status == 202, held.body
        wait_for(lambda: _running(live_org, held.body["data"]["id"]), timeout=10, every=0.05, what="running")
        servers.redis.stop()
        down_at = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        servers.redis.start()
        back_at = time.monotonic()
        time.sleep(10)
    answers = writes.answers + reads.answers
    during = [a for a in answers if down_at <= a[0] <= back_at]
    assert len(during) > 100, len(during)
    failures = [
        (round(t - down_at, 1), status, code)
        for t, status, code, _ in answers
        if status >= 500 or status == 0
    ]
    assert not failures, failures[:10]
    assert {status for _, status, _, _ in writes.answers} == {202}
    assert {status for _, status, _, _ in reads.answers} == {200}
    accepted = {response.body["data"]["id"] for _, _, _, response in writes.answers}
    accepted.add(held.body["data"]["id"])

    def all_completed():
        with tenant_context(live_org):
            return Job.objects.filter(pk__in=accepted, status=JobStatus.COMPLETED).count() == len(accepted)

    wait_for(all_completed, timeout=120, every=0.5, what="every accepted job completed")
    recovered = time.monotonic() - back_at
    # The workers rode out the outage and reconnected themselves: none exited, none restarted.
    assert all(worker.process.poll() is None for worker in system.workers.values())
    assert {kind: worker.process.pid for kind, worker in system.workers.items()} == system.pids
    with tenant_context(live_org):
        assert Job.objects.count() == len(accepted)
        completions = JobEvent.objects.filter(job_id__in=accepted, kind=EventKind.COMPLETED).count()
        assert completions == len(accepted)
        assert CreditTransaction.objects.filter(kind="deduction").count() == len(accepted)
        assert not CreditTransaction.objects.filter(kind="refund").exists()
    assert_balance_equals_ledger(live_org, 100_000 - 10 * len(accepted))
    report(
        outage_s=OUTAGE_SECONDS,
        requests=len(answers),
        during_outage=len(during),
        answers_5xx=0,
        jobs_accepted=len(accepted),
        all_completed_after_return_s=round(recovered, 1),
        completed_twice=0,
        restarts=0,
    )
