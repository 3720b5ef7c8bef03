"""Concurrent job creation against committed data: the balance row serialises charges."""

import threading

from django.db import connections
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from billing.selectors import credits_balance, credits_ledger_sum
from jobs.models import Job
from tenants.tests.helpers import bearer_for


def test_twenty_parallel_creations_for_five_affordable_jobs(live_org, monkeypatch):
    from jobs import tasks

    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *a, **k: None)  # no worker needed here
    live_org.grant(50)  # five summaries at 10 credits
    token = bearer_for(live_org.admin)
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def submit():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            response = client.post("/api/v1/summarize", {"text": "Parallel request."}, format="json")
            with lock:
                statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(statuses) == [202] * 5 + [402] * 15
    with tenant_context(live_org):
        assert Job.objects.count() == 5
        assert credits_balance() == 0 == credits_ledger_sum()
