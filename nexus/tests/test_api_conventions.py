"""The envelope, request ids, error codes and the guarantee that no internals leak."""

import json
import threading

import pytest
from django.db import connection, connections

pytestmark = pytest.mark.django_db

_LEAK_MARKERS = ["Traceback", "secret internal detail", "tenants_user", "settings.py", "psycopg", "SELECT "]


def _assert_error_envelope(response, status, code):
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "meta"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    text = response.content.decode()
    for marker in _LEAK_MARKERS:
        assert marker not in text
    return body


@pytest.mark.urls("nexus.tests.urls")
def test_unhandled_exception_is_internal_error_without_trace(client):
    response = client.get("/api/v1/test/boom")
    _assert_error_envelope(response, 500, "INTERNAL_ERROR")


@pytest.mark.urls("nexus.tests.urls")
def test_request_runs_in_the_callers_schema_and_resets_after(world, api_as):
    response = api_as(world.member_a).get("/api/v1/test/schema")
    assert response.json()["data"]["schema"] == world.org_a.schema_name
    response = api_as(world.member_b).get("/api/v1/test/schema")
    assert response.json()["data"]["schema"] == world.org_b.schema_name
    assert connection.schema_name == "public"


def test_success_envelope_has_data_and_request_id(world, api_as):
    response = api_as(world.member_a).get("/api/v1/org")
    body = response.json()
    assert set(body) == {"data", "meta"}
    assert body["meta"]["request_id"] == response["X-Request-ID"]


def test_client_request_id_is_echoed(world, api_as):
    response = api_as(world.member_a).get("/api/v1/org", HTTP_X_REQUEST_ID="trace-abc.123")
    assert response["X-Request-ID"] == "trace-abc.123"
    assert response.json()["meta"]["request_id"] == "trace-abc.123"


def test_malformed_client_request_id_is_replaced(world, api_as):
    response = api_as(world.member_a).get("/api/v1/org", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32


def test_unknown_api_path_is_json_404(client):
    _assert_error_envelope(client.get("/api/v1/does-not-exist"), 404, "NOT_FOUND")
    _assert_error_envelope(client.get("/api/v9/org"), 404, "NOT_FOUND")


def test_no_credentials_is_401_with_challenge(client):
    response = client.get("/api/v1/org")
    _assert_error_envelope(response, 401, "UNAUTHORIZED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_validation_error_is_422_with_field_details(world, api_as):
    response = api_as(world.admin_a).patch(
        f"/api/v1/org/members/{world.member_a.pk}", {"role": "boss"}, format="json"
    )
    body = _assert_error_envelope(response, 422, "VALIDATION_ERROR")
    assert "role" in body["error"]["details"]["fields"]


def test_malformed_json_is_400(world, api_as):
    response = api_as(world.admin_a).generic(
        "PATCH", f"/api/v1/org/members/{world.member_a.pk}", "{not json", content_type="application/json"
    )
    _assert_error_envelope(response, 400, "MALFORMED_REQUEST")


def test_wrong_method_is_405(world, api_as):
    _assert_error_envelope(api_as(world.admin_a).delete("/api/v1/org"), 405, "METHOD_NOT_ALLOWED")


def test_bad_pagination_and_sort_are_422(world, api_as):
    client = api_as(world.member_a)
    for query in ["limit=0", "limit=101", "page=abc", "sort=password", "role=owner"]:
        _assert_error_envelope(client.get(f"/api/v1/org/members?{query}"), 422, "VALIDATION_ERROR")


def test_pagination_meta(world, api_as):
    response = api_as(world.member_a).get("/api/v1/org/members?limit=1&page=2&sort=-email")
    body = response.json()
    assert body["meta"]["page"] == 2
    assert body["meta"]["limit"] == 1
    assert body["meta"]["total"] == 2
    assert [m["email"] for m in body["data"]] == ["admin@org-a.test"]


def test_openapi_schema_and_local_swagger_assets(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    assert "/api/v1/org/members" in document["paths"]
    ok = document["paths"]["/api/v1/org"]["get"]["responses"]["200"]["content"]["application/json"]
    assert set(ok["schema"]["properties"]) == {"data", "meta"}
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs.content
    assert b"cdn.jsdelivr" not in docs.content


def test_health_reports_database_and_redis(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "up"
    assert body["checks"]["redis"]["status"] == "up"


def test_health_is_degraded_when_redis_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"]["status"] == "down"


def test_health_is_503_when_database_is_down(client):
    # A fresh connection (other thread) to a port nothing listens on.
    db_settings = connections.settings["default"]
    original = {"HOST": db_settings["HOST"], "PORT": db_settings["PORT"]}
    result = {}

    def probe():
        try:
            result["response"] = client.get("/health")
        finally:
            connections.close_all()

    db_settings.update({"HOST": "127.0.0.1", "PORT": "1"})
    try:
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(timeout=30)
    finally:
        db_settings.update(original)
    response = result["response"]
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "down"
