"""ETL endpoints: sources, runs, comparison, stats, records; permissions and isolation."""

import pytest
from django_tenants.utils import tenant_context

from etl.models import EtlRun
from etl.services import etl_run_source, etl_source_create
from etl.tests.conftest import API_MAPPING, CSV_MAPPING

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(broker):
    return broker.watch("etl.execute_run")


def _source_body(files, **overrides):
    return {
        "name": "Articles",
        "kind": "csv",
        "config": {"path": "articles.csv"},
        "field_mapping": CSV_MAPPING,
        "schedule_minutes": 30,
        **overrides,
    }


def test_admin_creates_and_members_read_sources(world, api_as, files):
    admin, member = api_as(world.admin_a), api_as(world.member_a)
    response = admin.post("/api/v1/etl/sources", _source_body(files), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    assert data["kind"] == "csv"
    assert data["required_fields"] == ["external_id", "title"]
    assert member.get("/api/v1/etl/sources").json()["meta"]["total"] == 1
    assert member.post("/api/v1/etl/sources", _source_body(files), format="json").status_code == 403
    assert (
        member.patch(f"/api/v1/etl/sources/{data['id']}", {"enabled": False}, format="json").status_code
        == 403
    )
    patched = admin.patch(
        f"/api/v1/etl/sources/{data['id']}", {"enabled": False, "schedule_minutes": 5}, format="json"
    )
    assert patched.json()["data"]["enabled"] is False
    assert patched.json()["data"]["schedule_minutes"] == 5
    assert admin.delete(f"/api/v1/etl/sources/{data['id']}").status_code == 204


def test_api_key_is_write_only(world, api_as, mock_api):
    body = {
        "name": "Items",
        "kind": "api",
        "config": {"url": mock_api.url},
        "field_mapping": API_MAPPING,
        "api_key": "super-secret-key",
    }
    response = api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json")
    assert response.status_code == 201
    assert "super-secret-key" not in response.content.decode()
    assert response.json()["data"]["api_key_set"] is True
    listed = api_as(world.member_a).get("/api/v1/etl/sources").content.decode()
    assert "super-secret-key" not in listed


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"config": {"path": "/etc/passwd"}}, "names no file in this organisation's data directory"),
        ({"config": {"path": "a.csv", "url": "https://example.com/a.csv"}}, "at most one of"),
        ({"kind": "api", "config": {"url": "ftp://x"}}, "must use"),
        ({"field_mapping": {"title": "Headline"}}, "external_id"),
        ({"field_mapping": {"external_id": "id", "colour": "c"}}, "Unknown unified fields"),
        ({"required_fields": ["external_id", "url"]}, "not in field_mapping"),
        ({"kind": "ftp"}, "valid choice"),
        ({"schedule_minutes": 0}, "greater than or equal"),
    ],
)
def test_invalid_sources_are_422(world, api_as, files, overrides, message):
    body = _source_body(files, **overrides)
    if "field_mapping" in overrides and "required_fields" not in overrides:
        body["required_fields"] = ["external_id"]
    response = api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json")
    assert response.status_code == 422
    assert message in response.content.decode()


def test_private_api_urls_are_refused(world, api_as, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    body = {
        "name": "x",
        "kind": "api",
        "config": {"url": "http://169.254.169.254/latest"},
        "field_mapping": API_MAPPING,
    }
    response = api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["reason"] == "unsafe_url"


def test_run_now_queues_once(world, api_as, files, queued):
    admin = api_as(world.admin_a)
    source_id = admin.post("/api/v1/etl/sources", _source_body(files), format="json").json()["data"]["id"]
    response = admin.post(f"/api/v1/etl/sources/{source_id}/run")
    assert response.status_code == 202
    assert response.json()["data"]["status"] == "queued"
    assert admin.post(f"/api/v1/etl/sources/{source_id}/run").status_code == 409
    assert api_as(world.member_a).post(f"/api/v1/etl/sources/{source_id}/run").status_code == 403


def test_runs_detail_compare_and_stats(world, api_as, files):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles",
            kind="csv",
            config={"path": "articles.csv"},
            field_mapping=CSV_MAPPING,
        )
        first = etl_run_source(source=source)
        second = etl_run_source(source=source)
    client = api_as(world.member_a)
    runs = client.get("/api/v1/etl/runs?limit=1").json()
    assert runs["meta"]["total"] == 2
    assert runs["data"][0]["id"] == str(second.pk)
    detail = client.get(f"/api/v1/etl/runs/{first.pk}").json()["data"]
    assert detail["inserted"] == 7
    assert len(detail["quarantined_items"]) == 3
    assert {e["kind"] for e in detail["drift_events"]} == {"new"}
    compare = client.get(f"/api/v1/etl/runs/compare?source={source.pk}").json()["data"]
    assert compare["previous"]["id"] == str(first.pk)
    assert compare["current"]["id"] == str(second.pk)
    assert compare["differences"]["inserted"] == -7
    assert compare["differences"]["fetched"] == -12
    assert compare["drift"] == {"previous": ["new:Page Views"], "current": []}
    explicit = client.get(f"/api/v1/etl/runs/compare?a={first.pk}&b={second.pk}").json()["data"]
    assert explicit["differences"] == compare["differences"]
    assert client.get("/api/v1/etl/runs/compare").status_code == 422
    (stats,) = client.get("/api/v1/etl/stats").json()["data"]
    assert stats["records"] == 7
    assert stats["records_processed"] == 12
    assert stats["runs"] == 2
    assert stats["last_status"] == "succeeded"
    assert stats["last_success_at"]
    assert stats["last_failure_at"] is None


def test_compare_flags_anomalies_against_history(world, api_as, files):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles",
            kind="csv",
            config={"path": "articles.csv"},
            field_mapping=CSV_MAPPING,
        )
        for _ in range(3):
            EtlRun.objects.create(
                source=source,
                trigger="schedule",
                status="succeeded",
                fetched=100,
                inserted=100,
                duration_ms=50,
            )
        EtlRun.objects.create(
            source=source,
            trigger="schedule",
            status="failed",
            fetched=3,
            inserted=0,
            duration_ms=50,
            error="boom",
        )
    data = api_as(world.member_a).get(f"/api/v1/etl/runs/compare?source={source.pk}").json()["data"]
    anomalies = " ".join(data["anomalies"])
    assert "fetched 3" in anomalies
    assert "failed, after a history of successful runs" in anomalies
    assert data["status_changed"] is True
    assert data["error_changed"] is True


def test_data_endpoint_filters_and_reports_latency(world, api_as, files):
    with tenant_context(world.org_a):
        csv = etl_source_create(
            name="Articles",
            kind="csv",
            config={"path": "articles.csv"},
            field_mapping=CSV_MAPPING,
        )
        etl_run_source(source=csv)
    client = api_as(world.member_a)
    body = client.get("/api/v1/data?limit=3").json()
    assert body["meta"]["total"] == 7
    assert len(body["data"]) == 3
    assert body["meta"]["api_latency_ms"] >= 0
    assert body["data"][0]["external_id"] == "A-009"  # newest first
    assert [r["external_id"] for r in client.get("/api/v1/data?search=revenue").json()["data"]] == ["A-002"]
    tagged = {r["external_id"] for r in client.get("/api/v1/data?tags=product").json()["data"]}
    assert tagged == {"A-001", "A-006"}
    window = client.get("/api/v1/data?from=2026-01-07&to=2026-01-08&sort=published_at").json()["data"]
    assert [r["external_id"] for r in window] == ["A-003", "A-004"]
    assert client.get(f"/api/v1/data?source={csv.pk}").json()["meta"]["total"] == 7
    assert client.get("/api/v1/data?source=nope").status_code == 422


def test_another_organisations_sources_runs_and_records_are_invisible(world, api_as, files):
    with tenant_context(world.org_b):
        source = etl_source_create(
            name="B only", kind="csv", config={"path": "articles.csv"}, field_mapping=CSV_MAPPING
        )
        run = etl_run_source(source=source)
    client = api_as(world.admin_a)
    assert client.get(f"/api/v1/etl/sources/{source.pk}").status_code == 404
    assert client.post(f"/api/v1/etl/sources/{source.pk}/run").status_code == 404
    assert client.get(f"/api/v1/etl/runs/{run.pk}").status_code == 404
    assert client.get(f"/api/v1/etl/runs/compare?a={run.pk}&b={run.pk}").status_code == 404
    assert client.get("/api/v1/data").json()["meta"]["total"] == 0
    assert client.get("/api/v1/etl/stats").json()["data"] == []


def test_health_counts_a_finished_run_and_names_nothing_of_it(world, client, files):
    before = client.get("/health").json()["etl"]["runs_last_hour"]
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles",
            kind="csv",
            config={"path": "articles.csv"},
            field_mapping=CSV_MAPPING,
        )
        etl_run_source(source=source)
    response = client.get("/health")
    after = response.json()["etl"]["runs_last_hour"]
    assert after == {"succeeded": before["succeeded"] + 1, "failed": before["failed"]}
    for secret in (str(source.pk), "Articles", world.org_a.name, world.org_a.schema_name, "articles.csv"):
        assert secret not in response.content.decode()


@pytest.mark.parametrize(
    "config,message",
    [
        ({"api_key_env": "SECRET_KEY"}, "api_key_env is no longer accepted"),
        ({"api_key_env": "STRIPE_SECRET_KEY"}, "api_key_env is no longer accepted"),
        ({"api_key_env": "ETL_SOURCE_KEY_ITEMS"}, "api_key_env is no longer accepted"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": "many"}, "page_size"),
    ],
)
def test_api_sources_cannot_read_server_variables_or_page_badly(world, api_as, mock_api, config, message):
    body = {
        "name": "x",
        "kind": "api",
        "config": {"url": mock_api.url, **config},
        "field_mapping": API_MAPPING,
    }
    response = api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json")
    assert response.status_code == 422
    assert message in response.content.decode()


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    ("query", "param", "message"),
    [
        ("runs?source=abc", "source", "source must be a data source id."),
        ("runs?source=12", "source", "source must be a data source id."),
        ("runs/compare?source=abc", "source", "source must be a data source id."),
        ("runs/compare?a=abc&b=6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10", "a", "a must be a run id."),
        ("runs/compare?a=6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10&b=%20x", "b", "b must be a run id."),
    ],
)
def test_a_malformed_id_filter_is_422_naming_the_parameter(world, api_as, version, query, param, message):
    response = api_as(world.member_a).get(f"/api/{version}/etl/{query}")
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": message,
        "details": {"fields": {param: ["Invalid id."]}},
    }
    assert "UUID" not in response.content.decode()  # never Django's own "is not a valid UUID"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_well_formed_unknown_or_foreign_id_filter_is_404(world, api_as, files, version):
    with tenant_context(world.org_b):
        foreign = etl_source_create(
            name="B only", kind="csv", config={"path": "articles.csv"}, field_mapping=CSV_MAPPING
        )
        foreign_run = etl_run_source(source=foreign)
    client = api_as(world.member_a)
    unknown = "6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10"
    for source_id in (unknown, foreign.pk):
        for path in (f"runs?source={source_id}", f"runs/compare?source={source_id}"):
            response = client.get(f"/api/{version}/etl/{path}")
            assert response.status_code == 404, path
            assert response.json()["error"] == {
                "code": "NOT_FOUND",
                "message": "No such data source.",
                "details": {},
            }
    for run_id in (unknown, foreign_run.pk):
        response = client.get(f"/api/{version}/etl/runs/compare?a={run_id}&b={run_id}")
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "No such run."


def test_an_empty_id_filter_is_no_filter(world, api_as, files):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles", kind="csv", config={"path": "articles.csv"}, field_mapping=CSV_MAPPING
        )
        etl_run_source(source=source)
    client = api_as(world.member_a)
    assert client.get("/api/v1/etl/runs?source=").json()["meta"]["total"] == 1
    compare = client.get("/api/v1/etl/runs/compare?source=&a=&b=")
    assert compare.status_code == 422
    assert compare.json()["error"]["details"] == {"fields": {"source": ["Required."]}}
