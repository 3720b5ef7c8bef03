"""What the unauthenticated operational endpoints say, and to whom: /metrics fails closed
outside DEBUG; /health reports service checks and an aggregate of the ETL scheduler,
nothing of any one organisation."""

from __future__ import annotations

import re
import time

import pytest
from django_tenants.utils import tenant_context

from etl import scheduler_stats, tasks
from etl.mock_api import MockApi
from etl.samples import MOCK_API_MAPPING
from etl.services import etl_run_source, etl_source_create
from nexus.redis import get_redis, redis_key

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789abcdef"  # nosec B105


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    return settings


def _is_prometheus(response) -> bool:
    return response.status_code == 200 and b"# TYPE" in response.content


def test_metrics_with_nothing_configured_is_404_outside_debug(client, production):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.content == b"not found\n"


def test_metrics_with_nothing_configured_is_open_in_debug(client, production):
    production.DEBUG = True
    assert _is_prometheus(client.get("/metrics"))


def test_metrics_needs_the_bearer_token(client, production):
    production.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert _is_prometheus(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
    assert _is_prometheus(client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}"))


def test_metrics_token_is_not_enough_in_debug_either(client, production):
    production.DEBUG = True
    production.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 404


def test_metrics_from_an_allowed_network(client, production):
    production.METRICS_ALLOWED_IPS = ["10.8.0.0/16", "2001:db8:1::/48", "192.0.2.7"]
    assert _is_prometheus(client.get("/metrics", REMOTE_ADDR="10.8.3.4"))
    assert _is_prometheus(client.get("/metrics", REMOTE_ADDR="2001:db8:1::9"))
    assert _is_prometheus(client.get("/metrics", REMOTE_ADDR="::ffff:10.8.0.1"))
    assert _is_prometheus(client.get("/metrics", REMOTE_ADDR="192.0.2.7"))
    assert client.get("/metrics", REMOTE_ADDR="10.9.0.1").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 404
    # X-Forwarded-For is the caller's say, not the connecting peer.
    assert (
        client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="10.8.3.4").status_code == 404
    )


def test_metrics_with_token_and_networks_needs_both(client, production):
    production.METRICS_TOKEN = TOKEN
    production.METRICS_ALLOWED_IPS = ["10.8.0.0/16"]
    bearer = f"Bearer {TOKEN}"
    assert client.get("/metrics", REMOTE_ADDR="10.8.3.4").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="10.9.0.1", HTTP_AUTHORIZATION=bearer).status_code == 404
    assert _is_prometheus(client.get("/metrics", REMOTE_ADDR="10.8.3.4", HTTP_AUTHORIZATION=bearer))


def test_a_bad_network_in_the_setting_stops_start_up():
    import subprocess
    import sys

    result = subprocess.run(  # nosec B603
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **__import__("os").environ,
            "DJANGO_SETTINGS_MODULE": "nexus.settings",
            "METRICS_ALLOWED_IPS": "10.0.0.0/33",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "METRICS_ALLOWED_IPS: '10.0.0.0/33'" in result.stderr


@pytest.fixture
def fresh_stats():
    redis = get_redis()
    keys = list(redis.scan_iter(redis_key("etl", "scheduler", "*")))
    if keys:
        redis.delete(*keys)
    yield


def test_health_reports_the_scheduler_aggregate_over_all_organisations(world, client, fresh_stats, broker):
    assert client.get("/health").json()["etl"] == {
        "last_dispatch_at": None,
        "runs_last_hour": {"succeeded": 0, "failed": 0},
    }
    tasks.dispatch_due()
    sources = []
    with MockApi(api_key="right-key", items=5) as api:
        for org, name in ((world.org_a, "Secret sales A"), (world.org_b, "Secret sales B")):
            with tenant_context(org):
                for suffix, key in (("", "right-key"), (" broken", "wrong-key")):
                    source = etl_source_create(
                        name=name + suffix,
                        kind="api",
                        config={"url": f"{api.url}?ledger=secret-ledger", "page_size": 100},
                        field_mapping=MOCK_API_MAPPING,
                        api_key=key,
                        requests_per_second=50,
                    )
                    run = etl_run_source(source=source)
                    assert run.status == ("failed" if suffix else "succeeded"), run.error
                    sources += [source, run]
    response = client.get("/health")
    body = response.json()
    assert set(body) == {"status", "checks", "etl"}
    assert set(body["checks"]) == {"database", "redis"}
    assert body["etl"]["runs_last_hour"] == {"succeeded": 2, "failed": 2}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", body["etl"]["last_dispatch_at"])
    text = response.content.decode()
    for org in (world.org_a, world.org_b):
        assert org.name not in text
        assert org.schema_name not in text
        assert str(org.pk) not in text
    for thing in sources:
        assert str(thing.pk) not in text
    assert "Secret sales" not in text
    assert "secret-ledger" not in text
    assert "HTTP 401" not in text


def test_runs_older_than_an_hour_drop_out_of_the_aggregate(client, fresh_stats, monkeypatch):
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 61 * 60)
    scheduler_stats.record_run_finished(status="failed")
    monkeypatch.setattr(time, "time", lambda: real_time() - 59 * 60)
    scheduler_stats.record_run_finished(status="failed")
    monkeypatch.setattr(time, "time", real_time)
    assert client.get("/health").json()["etl"]["runs_last_hour"] == {"succeeded": 0, "failed": 1}


def test_health_is_one_query_whatever_the_number_of_organisations(world, client, fresh_stats):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/health")
    assert response.status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    assert [s for s in statements if "search_path" not in s.lower()] == ["SELECT 1"], statements


def test_health_without_redis_has_no_etl_aggregate(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["etl"] is None


def test_health_answers_probes_whatever_host_they_name(client, settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    for host in ("127.0.0.1:8000", "10.8.0.7", "api.example.com"):
        response = client.get("/health", HTTP_HOST=host)
        assert response.status_code == 200, host
        assert response.json()["status"] == "ok"
        assert response["X-Content-Type-Options"] == "nosniff"  # below the security headers
    # Everything else still checks the name, and is sent to https.
    assert client.get("/api/v1/auth/me", HTTP_HOST="10.8.0.7").status_code == 400
    assert client.get("/api/v1/auth/me", HTTP_HOST="api.example.com").status_code == 301
