"""Twenty clients spend at the same moment from a balance that pays for ten: exactly ten
are charged and run, ten are refused with 402, and the balance equals its ledger."""

import threading
import time
import uuid

from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from jobs.models import Job, JobStatus
from tests.faults.conftest import TEXT, assert_balance_equals_ledger, job_states, wait_for, worker_log_tail


def test_twenty_concurrent_spends_on_a_balance_for_ten(system, live_org, report):
    live_org.grant(100)  # a summary costs 10
    api = system.api(live_org.admin)
    barrier = threading.Barrier(20)
    answers = []

    def spend(n: int) -> None:
        barrier.wait()
        answers.append(api.summarize(f"{TEXT} Client {n} {uuid.uuid4().hex}."))

    threads = [threading.Thread(target=spend, args=(n,)) for n in range(20)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    answered = time.monotonic() - began

    statuses = sorted(answer.status for answer in answers)
    assert statuses == [202] * 10 + [402] * 10, statuses
    assert {answer.code for answer in answers if answer.status == 402} == {"PAYMENT_REQUIRED"}
    accepted = {answer.body["data"]["id"] for answer in answers if answer.status == 202}
    assert len(accepted) == 10

    def all_completed():
        with tenant_context(live_org):
            return Job.objects.filter(status=JobStatus.COMPLETED).count() == 10

    # Ten jobs for two job processes finish in well under 10 s here; the bound is generous
    # for a loaded runner, and a timeout reports how the jobs and the worker stood.
    wait_for(
        all_completed,
        timeout=120,
        what="ten completed jobs",
        explain=lambda: f"{job_states(live_org)}; jobs worker: {worker_log_tail('jobs')}",
    )
    done = time.monotonic() - began
    with tenant_context(live_org):
        assert {str(pk) for pk in Job.objects.values_list("pk", flat=True)} == accepted
        assert CreditTransaction.objects.filter(kind="deduction").count() == 10
        assert not CreditTransaction.objects.filter(kind="refund").exists()
    assert_balance_equals_ledger(live_org, 0)
    report(accepted=10, refused=10, balance=0, answered_s=round(answered, 1), all_done_s=round(done, 1))
