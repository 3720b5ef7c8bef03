"""Concurrent duplicates of one key, against committed data (no test transaction)."""

import threading

from django.db import connections
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from billing.models import CreditTransaction
from jobs.models import Job
from tenants.tests.helpers import bearer_for

BODY = {"text": "Charge me once, however often my network makes me retry."}


def _post(client, key):
    return client.post("/api/v1/summarize", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_concurrent_duplicates_create_one_job(live_org):
    live_org.grant(100)
    token = bearer_for(live_org.admin)
    barrier = threading.Barrier(8)
    statuses = []

    def send():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            statuses.append(_post(client, "same-everywhere").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses.count(202) >= 1 and set(statuses) <= {202, 409}
    with tenant_context(live_org):
        assert Job.objects.count() == 1
        assert CreditTransaction.objects.filter(kind="deduction").count() == 1
