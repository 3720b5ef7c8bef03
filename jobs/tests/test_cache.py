"""The result cache: per organisation, free, immediate, and never an outage."""

import logging

import pytest
from django.core.cache import cache
from django_tenants.utils import tenant_context
from prometheus_client import REGISTRY

from billing.models import CreditTransaction
from billing.selectors import credits_balance
from jobs import tasks
from jobs.cache import cache_key
from jobs.models import Job

pytestmark = pytest.mark.django_db

TEXT = "Caching saves money. The second identical request is free."


@pytest.fixture(autouse=True)
def _empty_cache():
    yield
    cache.clear()


def _complete_one(world, client, django_capture_on_commit_callbacks, job_type="summarize", text=TEXT):
    job_id = client.post(f"/api/v1/{job_type}", {"text": text}, format="json").json()["data"]["id"]
    with tenant_context(world.org_a), django_capture_on_commit_callbacks(execute=True):
        tasks.run_job(job_id)
    return job_id


def test_identical_text_is_answered_from_cache_for_free(funded, api_as, django_capture_on_commit_callbacks):
    client = api_as(funded.member_a)
    first_id = _complete_one(funded, client, django_capture_on_commit_callbacks)
    response = client.post("/api/v1/summarize", {"text": TEXT}, format="json")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["status"] == "completed"
    assert data["cache_hit"] is True
    assert data["cost"] == 0
    first = client.get(f"/api/v1/jobs/{first_id}").json()["data"]
    assert data["output"] == first["output"]
    assert data["provider"] == first["provider"]
    with tenant_context(funded.org_a):
        assert credits_balance() == 90
        assert not CreditTransaction.objects.filter(job_id=data["id"]).exists()
    events = client.get(f"/api/v1/jobs/{data['id']}/events").json()["data"]
    assert [e["kind"] for e in events] == ["created", "completed"]


def test_cache_is_per_organisation(funded, api_as, django_capture_on_commit_callbacks):
    _complete_one(funded, api_as(funded.member_a), django_capture_on_commit_callbacks)
    response = api_as(funded.member_b).post("/api/v1/summarize", {"text": TEXT}, format="json")
    assert response.status_code == 202
    assert response.json()["data"]["cache_hit"] is False


def test_cache_is_per_job_type_and_exact_text(funded, api_as, django_capture_on_commit_callbacks):
    client = api_as(funded.member_a)
    _complete_one(funded, client, django_capture_on_commit_callbacks)
    assert client.post("/api/v1/analyze", {"text": TEXT}, format="json").status_code == 202
    assert client.post("/api/v1/summarize", {"text": TEXT + " "}, format="json").status_code == 202


def test_failed_jobs_are_not_cached(funded, api_as, django_capture_on_commit_callbacks):
    client = api_as(funded.member_a)
    with tenant_context(funded.org_a):
        from jobs import services

        job = services.job_create(
            user=funded.member_a, job_type="summarize", text=TEXT, provider="always-fails"
        )
        with django_capture_on_commit_callbacks(execute=True):
            for _ in range(3):
                tasks.run_job(str(job.pk))
    assert client.post("/api/v1/summarize", {"text": TEXT}, format="json").status_code == 202


def test_cache_keys_are_hashed_and_namespaced_by_schema(world):
    key = cache_key("summarize", TEXT)
    assert TEXT not in key
    assert key.startswith("jobcache:summarize:")
    assert len(key.split(":")[-1]) == 64
    with tenant_context(world.org_a):
        key_a = cache.make_key(key)
    with tenant_context(world.org_b):
        key_b = cache.make_key(key)
    assert key_a != key_b
    assert world.org_a.schema_name in key_a


def _metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_redis_down_is_a_miss_not_an_outage(
    funded, api_as, settings, caplog, django_capture_on_commit_callbacks
):
    client = api_as(funded.member_a)
    _complete_one(funded, client, django_capture_on_commit_callbacks)
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"},
    }
    before = _metric("nexus_cache_unavailable_total", operation="get")
    caplog.set_level(logging.WARNING, logger="jobs.cache")
    response = client.post("/api/v1/summarize", {"text": TEXT}, format="json")
    assert response.status_code == 202
    assert response.json()["data"]["cache_hit"] is False
    assert response.json()["data"]["cost"] == 10
    assert _metric("nexus_cache_unavailable_total", operation="get") == before + 1
    assert any(isinstance(r.msg, dict) and r.msg.get("event") == "cache.unavailable" for r in caplog.records)
    # Completing a job while Redis is down is fine too: the write is skipped.
    with tenant_context(funded.org_a), django_capture_on_commit_callbacks(execute=True):
        tasks.run_job(response.json()["data"]["id"])
        assert Job.objects.get(pk=response.json()["data"]["id"]).status == "completed"
