"""Job endpoints and usage analytics."""

import uuid

import pytest
from django_tenants.utils import tenant_context

from jobs import services, tasks
from jobs.models import Job

pytestmark = pytest.mark.django_db

TEXT = "The quarterly results were strong. Revenue grew by twelve percent. Costs fell."


def test_summarize_returns_202_with_a_pending_job(funded, api_as):
    response = api_as(funded.member_a).post("/api/v1/summarize", {"text": TEXT}, format="json")
    assert response.status_code == 202
    data = response.json()["data"]
    assert data["status"] == "pending"
    assert data["job_type"] == "summarize"
    assert data["cost"] == 10
    assert data["output"] is None
    assert data["attempt_count"] == 0
    uuid.UUID(data["id"])


def test_analyze_costs_25(funded, api_as):
    client = api_as(funded.member_a)
    assert client.post("/api/v1/analyze", {"text": TEXT}, format="json").json()["data"]["cost"] == 25
    assert client.get("/api/v1/credits").json()["data"]["balance"] == 75


def test_not_enough_credits_is_402_with_balance_and_required(world, api_as):
    response = api_as(world.member_a).post("/api/v1/analyze", {"text": TEXT}, format="json")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "PAYMENT_REQUIRED"
    assert error["details"] == {"balance": 0, "required": 25}
    with tenant_context(world.org_a):
        assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"text": ""}, {"text": "   "}, {"text": "x" * 20_001}, {"text": 5}, {"text": None}, {"text": ["a"]}],
)
def test_invalid_bodies_are_422(funded, api_as, body):
    response = api_as(funded.member_a).post("/api/v1/summarize", body, format="json")
    assert response.status_code == 422
    assert "text" in response.json()["error"]["details"]["fields"]


def test_job_detail_and_events(funded, api_as):
    client = api_as(funded.member_a)
    job_id = client.post("/api/v1/summarize", {"text": TEXT}, format="json").json()["data"]["id"]
    with tenant_context(funded.org_a):
        tasks.run_job(job_id)
    data = client.get(f"/api/v1/jobs/{job_id}").json()["data"]
    assert data["status"] == "completed"
    assert data["output"]["summary"]
    assert data["input"] == {"text": TEXT}
    assert data["provider"] == "local"
    assert data["completed_at"]
    events = client.get(f"/api/v1/jobs/{job_id}/events").json()["data"]
    assert [e["kind"] for e in events] == ["created", "started", "completed"]


def test_another_organisations_job_is_404(funded, api_as):
    job_id = (
        api_as(funded.member_b).post("/api/v1/summarize", {"text": TEXT}, format="json").json()["data"]["id"]
    )
    client = api_as(funded.member_a)
    for path in [f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/events"]:
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
    assert client.get("/api/v1/jobs").json()["meta"]["total"] == 0


def test_job_list_filters_sorts_and_paginates(funded, api_as):
    client = api_as(funded.member_a)
    first = client.post("/api/v1/summarize", {"text": TEXT}, format="json").json()["data"]["id"]
    client.post("/api/v1/analyze", {"text": TEXT}, format="json")
    with tenant_context(funded.org_a):
        tasks.run_job(first)
    assert client.get("/api/v1/jobs").json()["meta"]["total"] == 2
    completed = client.get("/api/v1/jobs?status=completed").json()["data"]
    assert [j["id"] for j in completed] == [first]
    assert [j["job_type"] for j in client.get("/api/v1/jobs?job_type=analyze").json()["data"]] == ["analyze"]
    ordered = client.get("/api/v1/jobs?sort=created_at&limit=1").json()
    assert ordered["data"][0]["id"] == first
    assert ordered["meta"]["total"] == 2
    assert "input" not in completed[0]
    for bad in ["status=done", "job_type=audit", "sort=input", "from=notadate"]:
        assert client.get(f"/api/v1/jobs?{bad}").status_code == 422


def test_usage_counts_spending_per_day_with_zero_days(funded, api_as):
    client = api_as(funded.member_a)
    client.post("/api/v1/summarize", {"text": TEXT}, format="json")
    job_id = client.post("/api/v1/analyze", {"text": TEXT}, format="json").json()["data"]["id"]
    with tenant_context(funded.org_a):
        services.job_claim(job_id=job_id)
        services.job_fail(job_id=job_id, attempt=1, error="bad", retryable=False)
    data = client.get("/api/v1/analytics/usage").json()["data"]
    assert data["days"] == 7
    assert len(data["credits_spent_per_day"]) == 7
    assert data["credits_spent_per_day"][-1]["credits"] == 10  # 10 + 25 spent, 25 refunded
    assert all(day["credits"] == 0 for day in data["credits_spent_per_day"][:-1])
    assert data["jobs_by_status"] == {"pending": 1, "running": 0, "completed": 0, "failed": 1}
    assert data["jobs_by_type"] == {"summarize": 1, "analyze": 1}
    assert len(client.get("/api/v1/analytics/usage?days=30").json()["data"]["credits_spent_per_day"]) == 30
    for bad in ["0", "91", "week"]:
        assert client.get(f"/api/v1/analytics/usage?days={bad}").status_code == 422


def test_session_user_can_submit_with_csrf(funded):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(funded.member_a)
    assert client.post("/api/v1/summarize", {"text": TEXT}, format="json").status_code == 403
