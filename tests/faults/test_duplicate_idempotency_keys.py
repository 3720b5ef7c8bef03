"""The same Idempotency-Key sent ten times at once (a client's retries racing each other):
one job, one charge; every answer is that job or a 409 asking to retry, and a retry after
the race answers the stored response."""

import threading
import time

from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from jobs.models import Job, JobStatus
from tests.faults.conftest import TEXT, assert_balance_equals_ledger, wait_for


def test_ten_concurrent_requests_with_one_key_charge_once(system, live_org, report):
    live_org.grant(100)
    api = system.api(live_org.admin)
    barrier = threading.Barrier(10)
    answers = []

    def send() -> None:
        barrier.wait()
        answers.append(api.summarize(TEXT, key="order-7-attempt"))

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    statuses = [answer.status for answer in answers]
    assert len(answers) == 10 and statuses.count(202) >= 1 and set(statuses) <= {202, 409}, statuses
    assert {answer.code for answer in answers if answer.status == 409} <= {"CONFLICT"}
    assert all(
        a.body["error"]["details"]["reason"] == "request_in_progress" for a in answers if a.status == 409
    )
    ids = {answer.body["data"]["id"] for answer in answers if answer.status == 202}
    assert len(ids) == 1
    (job_id,) = ids

    # The client's next retry, after the race, gets the stored answer: the same job.
    began = time.monotonic()
    again = api.summarize(TEXT, key="order-7-attempt")
    assert again.status == 202 and again.body["data"]["id"] == job_id
    assert again.headers.get("Idempotent-Replayed") == "true"

    def completed():
        with tenant_context(live_org):
            return Job.objects.filter(pk=job_id, status=JobStatus.COMPLETED).exists()

    wait_for(completed, timeout=60, what="the job completed")
    with tenant_context(live_org):
        assert Job.objects.count() == 1
        assert CreditTransaction.objects.filter(kind="deduction").count() == 1
    assert_balance_equals_ledger(live_org, 90)
    report(
        requests=10,
        answered_202=statuses.count(202),
        answered_409=statuses.count(409),
        jobs=1,
        charges=1,
        job_done_s=round(time.monotonic() - began, 1),
    )
