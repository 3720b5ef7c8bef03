"""PostgreSQL stopped for 20 s while clients submit jobs and read: every answer meanwhile is
the 503 SERVICE_UNAVAILABLE envelope with Retry-After (never a 500, never a page), and once
it is back the same web server and workers (no restart) answer and finish every job that
was accepted, exactly once."""

import time
import uuid

from django.db import connections
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from jobs.models import EventKind, Job, JobEvent, JobStatus
from tests.faults.conftest import TEXT, Load, assert_balance_equals_ledger, wait_for

OUTAGE_SECONDS = 20


def _submit(api):
    return api.summarize(f"{TEXT} [slow] {uuid.uuid4().hex}")


def _read(api):
    return api.call("GET", "/api/v1/credits")


def test_postgres_down_for_20_seconds_under_load(system, servers, live_org, report):
    live_org.grant(100_000)
    api = system.api(live_org.admin)
    # A 2-second job a second: the two job processes keep up, so what is measured after the
    # outage is recovery, not a backlog.
    with (
        Load(api, _submit, threads=1, period=1.0) as writes,
        Load(api, _read, threads=2, period=0.2) as reads,
    ):
        time.sleep(5)
        connections.close_all()
        servers.postgres.stop()
        down_at, down_wall = time.monotonic(), time.time()
        time.sleep(OUTAGE_SECONDS)
        servers.postgres.start()
        back_at, back_wall = time.monotonic(), time.time()
        time.sleep(15)
    answers = sorted(writes.answers + reads.answers, key=lambda a: a[0])

    unexpected = [
        (round(t - down_at, 1), status, code)
        for t, status, code, _ in answers
        if not (status in (200, 202) or (status == 503 and code == "SERVICE_UNAVAILABLE"))
    ]
    assert not unexpected, unexpected[:10]
    refused = [response for _, status, _, response in answers if status == 503]
    assert len(refused) > 50
    assert all(int(r.headers["Retry-After"]) > 0 for r in refused)
    assert all(r.headers["Content-Type"].startswith("application/json") for r in refused)
    # Answers begin again without restarting anything: the first success after the return.
    first_ok = next(t for t, status, _, _ in answers if t > back_at and status in (200, 202))
    last_refusal = max(t for t, status, _, _ in answers if status == 503)
    answering_again = first_ok - back_at
    assert answering_again < 10 and last_refusal < first_ok
    assert all(worker.process.poll() is None for worker in system.workers.values())
    assert {kind: worker.process.pid for kind, worker in system.workers.items()} == system.pids

    accepted = {response.body["data"]["id"] for _, status, _, response in writes.answers if status == 202}

    def all_completed():
        with tenant_context(live_org):
            return Job.objects.filter(pk__in=accepted, status=JobStatus.COMPLETED).count() == len(accepted)

    wait_for(all_completed, timeout=120, every=0.5, what="every accepted job completed")
    recovered = time.monotonic() - back_at
    with tenant_context(live_org):
        assert Job.objects.count() == len(accepted)
        # The jobs running when the database went away waited for it and finished their
        # first attempt: none was retried, none refunded.
        assert set(Job.objects.values_list("attempt_count", flat=True)) == {1}
        # The jobs held up by the outage (accepted before it, finished after it).
        held = [
            job.completed_at.timestamp() - back_wall
            for job in Job.objects.all()
            if job.created_at.timestamp() < down_wall < job.completed_at.timestamp()
        ]
        assert JobEvent.objects.filter(kind=EventKind.COMPLETED).count() == len(accepted)
        assert CreditTransaction.objects.filter(kind="deduction").count() == len(accepted)
        assert not CreditTransaction.objects.filter(kind="refund").exists()
    assert_balance_equals_ledger(live_org, 100_000 - 10 * len(accepted))
    report(
        outage_s=OUTAGE_SECONDS,
        answers_503=len(refused),
        other_errors=0,
        answering_again_after_return_s=round(answering_again, 1),
        jobs_accepted=len(accepted),
        held_up_jobs=len(held),
        held_up_jobs_done_after_return_s=round(max(held), 1) if held else None,
        all_completed_after_return_s=round(recovered, 1),
        restarts=0,
    )
