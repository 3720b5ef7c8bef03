"""Concurrent duplicates of one key, against committed data (no test transaction)."""

from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from jobs.models import Job
from nexus.tests.live import parallel_api_calls
from tenants.tests.helpers import bearer_for

BODY = {"text": "Charge me once, however often my network makes me retry."}


def test_concurrent_duplicates_create_one_job(live_org):
    live_org.grant(100)
    statuses = parallel_api_calls(
        bearer_for(live_org.admin),
        lambda client: (
            client.post(
                "/api/v1/summarize", BODY, format="json", HTTP_IDEMPOTENCY_KEY="same-everywhere"
            ).status_code
        ),
        8,
    )
    assert statuses.count(202) >= 1
    assert set(statuses) <= {202, 409}
    with tenant_context(live_org):
        assert Job.objects.count() == 1
        assert CreditTransaction.objects.filter(kind="deduction").count() == 1
