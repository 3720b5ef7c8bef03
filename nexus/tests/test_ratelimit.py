"""Per-organisation sliding-window rate limits, atomic under concurrency, failing open."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from nexus.redis import get_redis, redis_key
from tenants.tests.helpers import bearer_for


def _client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(user)}")
    return client


@pytest.fixture
def limited_org(live_org):
    live_org.api_rate_limit = 100
    live_org.save(update_fields=["api_rate_limit"])
    yield live_org
    get_redis().delete(redis_key("ratelimit", str(live_org.id)))


def test_110_parallel_requests_give_exactly_100_successes(limited_org):
    token = bearer_for(limited_org.admin)
    local = threading.local()

    def call(_):
        if not hasattr(local, "client"):
            local.client = APIClient()
            local.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            return local.client.get("/api/v1/org")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=24) as pool:
        responses = list(pool.map(call, range(110)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 10
    rejected = next(r for r in responses if r.status_code == 429)
    body = rejected.json()
    assert body["error"]["code"] == "RATE_LIMITED"
    retry_after = int(rejected["Retry-After"])
    assert 1 <= retry_after <= 900
    assert body["error"]["details"] == {"limit": 100, "window_seconds": 900, "retry_after": retry_after}
    assert rejected["RateLimit-Policy"] == '"org";q=100;w=900'
    assert rejected["RateLimit"] == f'"org";r=0;t={retry_after}'


def test_every_api_response_carries_the_headers(limited_org):
    client = _client(limited_org.admin)
    first = client.get("/api/v1/org")
    second = client.get("/api/v1/jobs")
    assert first["RateLimit-Policy"] == '"org";q=100;w=900'
    assert first["RateLimit"].startswith('"org";r=99;t=')
    assert second["RateLimit"].startswith('"org";r=98;t=')
    # Errors count and carry them too.
    missing = client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing["RateLimit"].startswith('"org";r=97;')


def test_the_limit_is_shared_by_the_organisations_users(limited_org):
    from tenants.services import user_create

    limited_org.api_rate_limit = 3
    limited_org.save(update_fields=["api_rate_limit"])
    other = user_create(email=f"second@{limited_org.email_domain}", organisation=limited_org, role="member")
    admin, member = _client(limited_org.admin), _client(other)
    assert [admin.get("/api/v1/org").status_code, member.get("/api/v1/org").status_code] == [200, 200]
    assert admin.get("/api/v1/org").status_code == 200
    assert member.get("/api/v1/org").status_code == 429


def test_operators_limit_change_applies_at_once(limited_org):
    client = _client(limited_org.admin)
    limited_org.api_rate_limit = 1
    limited_org.save(update_fields=["api_rate_limit"])
    assert client.get("/api/v1/org").status_code == 200
    assert client.get("/api/v1/org").status_code == 429
    limited_org.api_rate_limit = 5
    limited_org.save(update_fields=["api_rate_limit"])
    response = client.get("/api/v1/org")
    assert response.status_code == 200
    assert response["RateLimit-Policy"] == '"org";q=5;w=900'


def test_non_api_requests_are_not_counted(limited_org, client):
    response = client.get("/health")
    assert "RateLimit" not in response
    assert "RateLimit-Policy" not in response


@pytest.fixture
def anonymous_limit(settings):
    settings.RATE_LIMIT_ANONYMOUS = 3
    buckets = [
        redis_key("ratelimit", f"anonymous:{address}")
        for address in ("127.0.0.1", "203.0.113.7", "198.51.100.2")
    ]
    get_redis().delete(*buckets)
    yield
    get_redis().delete(*buckets)


def test_requests_without_an_organisation_are_limited_per_address(anonymous_limit, limited_org):
    client = APIClient()
    first = client.get("/api/v1/org")  # 401: no organisation, counted against the address
    assert first.status_code == 401
    assert first["RateLimit-Policy"] == '"anonymous";q=3;w=900'
    assert first["RateLimit"].startswith('"anonymous";r=2;')
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert bad_token.get("/api/v1/org").status_code == 401
    assert (
        client.post("/api/v1/auth/token", {"email": "x@example.com", "password": "wrong"}).status_code == 401
    )
    refused = client.post("/api/v1/auth/token", {"email": "x@example.com", "password": "wrong"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert "this address" in refused.json()["error"]["message"]
    assert int(refused["Retry-After"]) >= 1
    # An organisation's caller is counted against the organisation, not the address.
    assert _client(limited_org.admin).get("/api/v1/org")["RateLimit-Policy"] == '"org";q=100;w=900'


def test_a_token_refresh_counts_for_the_organisation_its_refresh_token_names(anonymous_limit, limited_org):
    from django.conf import settings

    from tenants.authentication import refresh_token_for

    client = APIClient()
    client.cookies[settings.REFRESH_COOKIE_NAME] = str(refresh_token_for(limited_org.admin))
    response = client.post("/api/v1/auth/refresh")
    assert response.status_code == 200
    assert response["RateLimit-Policy"] == '"org";q=100;w=900'
    # A forged or missing refresh token is an anonymous request.
    stranger = APIClient()
    stranger.cookies[settings.REFRESH_COOKIE_NAME] = "forged"
    assert stranger.post("/api/v1/auth/refresh")["RateLimit-Policy"] == '"anonymous";q=3;w=900'


def test_ipv6_callers_are_counted_by_their_64_block(settings):
    from django.test import RequestFactory

    from nexus.ratelimit import client_address

    factory = RequestFactory()
    first = factory.get("/api/v1/org", REMOTE_ADDR="2001:db8:1:2::1")
    second = factory.get("/api/v1/org", REMOTE_ADDR="2001:db8:1:2:ffff::9")
    other = factory.get("/api/v1/org", REMOTE_ADDR="2001:db8:1:3::1")
    assert client_address(first) == client_address(second) == "2001:db8:1:2::/64"
    assert client_address(other) == "2001:db8:1:3::/64"
    assert client_address(factory.get("/", REMOTE_ADDR="203.0.113.7")) == "203.0.113.7"


def test_the_address_behind_trusted_proxies_is_the_one_limited(anonymous_limit, settings):
    settings.RATE_LIMIT_ANONYMOUS = 1
    settings.RATE_LIMIT_TRUSTED_PROXIES = 1
    client = APIClient()
    # The client's own X-Forwarded-For entry (left of what our proxy appended) is ignored.
    assert client.get("/api/v1/org", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7").status_code == 401
    assert client.get("/api/v1/org", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7").status_code == 429
    assert client.get("/api/v1/org", HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 401


def test_redis_down_lets_requests_through(limited_org, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    before = REGISTRY.get_sample_value("nexus_ratelimit_unavailable_total") or 0
    caplog.set_level(logging.WARNING, logger="nexus.ratelimit")
    limited_org.api_rate_limit = 1
    limited_org.save(update_fields=["api_rate_limit"])
    client = _client(limited_org.admin)
    responses = [client.get("/api/v1/org") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "RateLimit" not in responses[0]
    assert responses[0]["RateLimit-Policy"] == '"org";q=1;w=900'
    assert REGISTRY.get_sample_value("nexus_ratelimit_unavailable_total") == before + 3
    assert any(
        isinstance(r.msg, dict) and r.msg.get("event") == "ratelimit.unavailable" for r in caplog.records
    )


def test_a_limit_of_zero_refuses_everything(limited_org):
    limited_org.api_rate_limit = 0
    limited_org.save(update_fields=["api_rate_limit"])
    response = _client(limited_org.admin).get("/api/v1/org")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
