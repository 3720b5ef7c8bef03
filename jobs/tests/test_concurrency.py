"""Concurrent job creation against committed data: the balance row serialises charges."""

from django_tenants.utils import tenant_context

from billing.selectors import credits_balance, credits_ledger_sum
from jobs.models import Job
from nexus.tests.live import parallel_api_calls
from tenants.tests.helpers import bearer_for


def test_twenty_parallel_creations_for_five_affordable_jobs(live_org, broker):
    live_org.grant(50)  # five summaries at 10 credits
    statuses = parallel_api_calls(
        bearer_for(live_org.admin),
        lambda client: (
            client.post("/api/v1/summarize", {"text": "Parallel request."}, format="json").status_code
        ),
        20,
    )
    assert sorted(statuses) == [202] * 5 + [402] * 15
    with tenant_context(live_org):
        assert Job.objects.count() == 5
        assert credits_balance() == 0 == credits_ledger_sum()
