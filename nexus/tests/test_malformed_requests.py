"""Malformed requests are a 4xx in the error envelope, with nothing written
(docs/specs/input-validation.md). Each test sends the malformed request itself."""

from __future__ import annotations

import json
import socket

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from etl.models import DataSource
from nexus.tests.live import gunicorn_server
from tenants.models import Organisation, Role, User
from tenants.tests.helpers import bearer_for
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

SOURCE = {
    "name": "Feed",
    "kind": "rss",
    "config": {"url": "https://feeds.example.com/rss"},
    "field_mapping": {},
}


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) == {"error", "meta"}
    assert body["error"]["code"] == code
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    return body["error"]


def _sources(org) -> int:
    with tenant_context(org):
        return DataSource.objects.count()


def _endpoints(org) -> int:
    with tenant_context(org):
        return WebhookEndpoint.objects.count()


def _raw(client, method: str, path: str, body: bytes, **extra):
    return client.generic(method, path, body, content_type="application/json", **extra)


# --- Body size ------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_and_nothing_is_written(world, api_as, settings):
    settings.API_MAX_BODY_BYTES = 1024
    body = json.dumps({**SOURCE, "name": "x" * 2000}).encode()
    error = _error(_raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body), 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"limit_bytes": 1024}
    assert _sources(world.org_a) == 0


def test_default_limit_refuses_a_two_megabyte_body(world, api_as):
    body = json.dumps({**SOURCE, "config": {"url": "https://x.example", "pad": "x" * 2_000_000}}).encode()
    response = _raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body)
    _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert _sources(world.org_a) == 0


def test_content_length_larger_than_the_body_and_the_limit_is_413(world, api_as):
    body = json.dumps(SOURCE).encode()
    response = _raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body, CONTENT_LENGTH="50000000")
    _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert _sources(world.org_a) == 0


def test_content_length_larger_than_the_body_within_the_limit_is_400(world, api_as):
    body = json.dumps(SOURCE).encode()
    response = _raw(
        api_as(world.admin_a), "POST", "/api/v1/etl/sources", body, CONTENT_LENGTH=str(len(body) + 100)
    )
    error = _error(response, 400, "MALFORMED_REQUEST")
    assert error["details"]["content_length"] == len(body) + 100
    assert error["details"]["received_bytes"] < len(body) + 100
    assert _sources(world.org_a) == 0


def test_content_length_smaller_than_an_oversized_body_reads_only_the_declared_bytes(world, api_as):
    body = json.dumps({**SOURCE, "config": {"url": "https://x.example", "pad": "x" * 2_000_000}}).encode()
    response = _raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body, CONTENT_LENGTH="40")
    _error(response, 400, "MALFORMED_REQUEST")
    assert _sources(world.org_a) == 0


def test_content_length_that_is_not_a_number_is_400(world, api_as):
    response = _raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", b"{}", CONTENT_LENGTH="12abc")
    _error(response, 400, "MALFORMED_REQUEST")


def test_a_view_can_declare_a_larger_body_limit(world, api_as, settings):
    from nexus.middleware import body_limit_for
    from nexus.tests.urls import BigBodyView

    settings.API_MAX_BODY_BYTES = 100
    settings.ROOT_URLCONF = "nexus.tests.urls"
    request = Client().get("/api/v1/test/big-body").wsgi_request
    assert body_limit_for(request) == BigBodyView.max_body_bytes
    body = json.dumps({"x": "y" * 500}).encode()
    response = _raw(api_as(world.admin_a), "POST", "/api/v1/test/big-body", body)
    assert response.status_code == 200
    assert response.json()["data"] == {"received": len(body)}


def test_a_path_setting_can_declare_a_body_limit(world, api_as, settings):
    settings.API_BODY_LIMITS = {r"^/api/v[0-9]+/etl/sources$": 64}
    body = json.dumps(SOURCE).encode()
    error = _error(_raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body), 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"limit_bytes": 64}


@pytest.fixture
def gunicorn_url(live_db):
    """The app under gunicorn (the production server), on the test database."""
    with gunicorn_server({}, log_name="input") as address:
        yield address


def _send(address, head: str, body: bytes, *, half_close: bool = False, tolerate_reset: bool = False):
    """Sends one request on a raw socket; returns the first response's status and JSON.
    A reset while sending fails the test unless `tolerate_reset` (bytes past the declared
    Content-Length are not part of the request, so the server need not read them)."""
    with socket.create_connection(address, timeout=15) as conn:
        try:
            conn.sendall(head.encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_reset:
                raise
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        return _read_response(conn.makefile("rb"))


def _read_response(stream) -> tuple[int, dict]:
    status = int(stream.readline().split(b" ", 2)[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        payload = stream.read(int(headers["content-length"]))
    else:  # chunked
        payload = b""
        while size := int(stream.readline().strip(), 16):
            payload += stream.read(size)
            stream.readline()
    return status, json.loads(payload)


def _committed_bearer(email: str) -> str:
    """A token gunicorn can check: its sign-in family is written on a connection of its own,
    outside this test's transaction (which gunicorn's connection cannot see)."""
    import threading

    from django.db import connection as thread_connection

    tokens: list[str] = []

    def issue() -> None:
        try:
            tokens.append(bearer_for(User.objects.get(email=email)))
        finally:
            thread_connection.close()

    thread = threading.Thread(target=issue)
    thread.start()
    thread.join(30)
    return tokens[0]


def _head(address, token: str, length: int) -> str:
    return (
        f"POST /api/v1/etl/sources HTTP/1.1\r\nHost: {address[0]}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n"
    )


def test_under_gunicorn_an_oversized_body_gets_the_413_not_a_broken_pipe(gunicorn_url):
    token = _committed_bearer("admin@org-a.test")
    body = b'{"name": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    status, payload = _send(gunicorn_url, _head(gunicorn_url, token, len(body)), body)
    assert (status, payload["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_under_gunicorn_a_content_length_larger_than_the_body_is_refused(gunicorn_url):
    token = _committed_bearer("admin@org-a.test")
    body = json.dumps(SOURCE).encode()
    status, payload = _send(gunicorn_url, _head(gunicorn_url, token, 50_000_000), body)
    assert (status, payload["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    status, payload = _send(gunicorn_url, _head(gunicorn_url, token, len(body) + 10), body, half_close=True)
    assert (status, payload["error"]["code"]) == (400, "MALFORMED_REQUEST")


def test_under_gunicorn_a_content_length_smaller_than_an_oversized_body_is_refused(gunicorn_url):
    token = _committed_bearer("admin@org-a.test")
    body = json.dumps({**SOURCE, "config": {"url": "https://x.example", "pad": "x" * 3_000_000}}).encode()
    status, payload = _send(gunicorn_url, _head(gunicorn_url, token, 60), body, tolerate_reset=True)
    assert (status, payload["error"]["code"]) == (400, "MALFORMED_REQUEST")
    with tenant_context(Organisation.objects.get(email_domain="org-a.test")):
        assert DataSource.objects.count() == 0


# --- JSON -------------------------------------------------------------------------------------


def test_json_nested_ten_thousand_deep_is_400(world, api_as):
    body = (
        b'{"name": "x", "kind": "rss", "field_mapping": {}, "config": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    )
    error = _error(_raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body), 400, "MALFORMED_REQUEST")
    assert error["details"] == {"max_depth": 64}
    assert _sources(world.org_a) == 0


def test_brackets_inside_strings_are_not_nesting(world, api_as):
    source = {**SOURCE, "name": "[[[[" * 50, "config": {"url": "https://x.example/{{{{" + "[" * 100}}
    response = api_as(world.admin_a).post("/api/v1/etl/sources", source, format="json")
    assert response.status_code != 400 or response.json()["error"]["code"] != "MALFORMED_REQUEST"


def test_duplicate_keys_are_refused_and_do_not_promote(world, api_as):
    body = b'{"role": "member", "role": "admin"}'
    response = _raw(api_as(world.admin_a), "PATCH", f"/api/v1/org/members/{world.member_a.pk}", body)
    error = _error(response, 400, "MALFORMED_REQUEST")
    assert error["details"] == {"duplicate_key": "role"}
    assert "'role'" in error["message"]
    world.member_a.refresh_from_db()
    assert world.member_a.role == Role.MEMBER


def test_a_duplicate_key_that_cannot_be_encoded_is_still_a_400(world, api_as):
    body = b'{"\\ud800": 1, "\\ud800": 2}'
    response = _raw(api_as(world.admin_a), "PATCH", f"/api/v1/org/members/{world.member_a.pk}", body)
    assert _error(response, 400, "MALFORMED_REQUEST")["details"] == {"duplicate_key": "\\ud800"}


def test_nan_is_not_json(world, api_as):
    body = json.dumps({**SOURCE, "requests_per_second": 1}).replace("1}", "NaN}").encode()
    _error(_raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body), 400, "MALFORMED_REQUEST")
    assert _sources(world.org_a) == 0


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ('{"url": "https://x.example/\\u0000"}', "config.url"),
        ('{"url": "https://x.example", "headers": {"a": ["ok", "b\\u0000"]}}', "config.headers.a.1"),
        ('{"url": "https://x.example/\\ud800"}', "config.url"),
        ('{"url": "https://x.example", "deep": {"x": "\\udfff tail"}}', "config.deep.x"),
    ],
)
def test_nul_or_lone_surrogate_in_config_is_422(world, api_as, config, field):
    body = ('{"name": "n", "kind": "rss", "field_mapping": {}, "config": ' + config + "}").encode()
    error = _error(_raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body), 422, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == [field]
    assert _sources(world.org_a) == 0


@pytest.mark.parametrize("kind", ["rss\\u0000", "\\ud83d"])
def test_nul_or_lone_surrogate_in_a_choice_field_is_422(world, api_as, kind):
    body = ('{"name": "n", "kind": "' + kind + '", "field_mapping": {}, "config": {}}').encode()
    error = _error(_raw(api_as(world.admin_a), "POST", "/api/v1/etl/sources", body), 422, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == ["kind"]
    assert _sources(world.org_a) == 0


def test_a_surrogate_pair_is_a_character_not_an_error(funded, api_as):
    body = json.dumps({"text": "smile \U0001f600"}, ensure_ascii=True).encode()
    assert b"\\ud83d\\ude00" in body
    response = _raw(api_as(funded.admin_a), "POST", "/api/v1/summarize", body)
    assert response.status_code == 202, response.content


def test_nul_in_a_member_role_is_422_and_role_unchanged(world, api_as):
    body = b'{"role": "admin\\u0000"}'
    response = _raw(api_as(world.admin_a), "PATCH", f"/api/v1/org/members/{world.member_a.pk}", body)
    _error(response, 422, "VALIDATION_ERROR")
    world.member_a.refresh_from_db()
    assert world.member_a.role == Role.MEMBER


# --- Short human text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Feed\nInjected: line", "Tab\there", "Esc \x1b[31mred", "\u202egnp.exe", "del\x7f"]
)
def test_control_characters_in_a_source_name_are_422(world, api_as, name):
    response = api_as(world.admin_a).post("/api/v1/etl/sources", {**SOURCE, "name": name}, format="json")
    error = _error(response, 422, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == ["name"]
    assert _sources(world.org_a) == 0


def test_control_characters_in_field_mapping_are_422(world, api_as):
    body = {**SOURCE, "field_mapping": {"title": "head\nline"}}
    error = _error(
        api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json"), 422, "VALIDATION_ERROR"
    )
    assert list(error["details"]["fields"]) == ["field_mapping"]


def test_control_characters_in_a_webhook_description_are_422(world, api_as):
    body = {
        "url": "https://hooks.example.com/x",
        "description": "ok\r\nX-Evil: 1",
        "event_types": ["job.completed"],
    }
    error = _error(
        api_as(world.admin_a).post("/api/v1/webhooks", body, format="json"), 422, "VALIDATION_ERROR"
    )
    assert list(error["details"]["fields"]) == ["description"]
    assert _endpoints(world.org_a) == 0


def test_a_trailing_newline_in_a_name_is_refused_not_trimmed(world, api_as):
    response = api_as(world.admin_a).post("/api/v1/etl/sources", {**SOURCE, "name": "Feed\n"}, format="json")
    assert list(_error(response, 422, "VALIDATION_ERROR")["details"]["fields"]) == ["name"]


def test_control_characters_in_a_webhook_description_from_the_page_are_refused(world):
    client = Client()
    client.force_login(world.admin_a)
    response = client.post(
        "/webhooks/create",
        {"url": "https://hooks.example.com/x", "description": "ok\x1b[2J", "event_types": ["job.completed"]},
    )
    assert response.status_code == 302
    assert _endpoints(world.org_a) == 0
    page = client.get("/webhooks").content.decode()
    assert "Control characters" in page


def test_a_number_is_not_a_name(world, api_as):
    response = api_as(world.admin_a).post("/api/v1/etl/sources", {**SOURCE, "name": 5}, format="json")
    assert list(_error(response, 422, "VALIDATION_ERROR")["details"]["fields"]) == ["name"]


def test_job_text_keeps_newlines_and_tabs_but_not_other_controls(funded, api_as):
    client = api_as(funded.admin_a)
    refused = client.post("/api/v1/summarize", {"text": "bell \x07 here"}, format="json")
    assert list(_error(refused, 422, "VALIDATION_ERROR")["details"]["fields"]) == ["text"]
    accepted = client.post("/api/v1/summarize", {"text": "line one\n\tline two\r\n"}, format="json")
    assert accepted.status_code == 202, accepted.content


# --- Query strings and paths --------------------------------------------------------------------


@pytest.mark.parametrize("page", [str(10**30), "1000001", "-1", "0", "abc"])
def test_page_out_of_range_is_422(world, api_as, page):
    error = _error(api_as(world.member_a).get(f"/api/v1/jobs?page={page}"), 422, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == ["page"]


def test_page_past_the_end_within_the_bound_is_an_empty_list(world, api_as):
    response = api_as(world.member_a).get("/api/v1/jobs?page=1000000&limit=100")
    assert response.status_code == 200
    assert response.json()["data"] == []


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/v1/data?search=a%00b", "search"),
        ("/api/v1/data?tags=x,%00", "tags"),
        ("/api/v1/org/members?search=%00", "search"),
        ("/api/v2/jobs?status=%00", "status"),
    ],
)
def test_nul_in_a_query_parameter_is_422(world, api_as, path, param):
    error = _error(api_as(world.member_a).get(path), 422, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == [param]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/%00",
        "/api/v1/etl/sources/abc%00def",
        "/api/v1/webhooks/deliveries/%00/redeliver",
        "/api/v1/org/members/%00",
    ],
)
def test_nul_in_a_path_id_is_404(world, api_as, path):
    client = api_as(world.admin_a)
    _error(client.get(path), 404, "NOT_FOUND")
    _error(client.post(path, {}, format="json"), 404, "NOT_FOUND")


def test_a_doubled_minus_in_sort_is_422(world, api_as):
    error = _error(api_as(world.member_a).get("/api/v1/jobs?sort=--created_at"), 422, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == ["sort"]


def test_spaces_around_filter_values_are_still_accepted(world, api_as):
    response = api_as(world.member_a).get("/api/v1/jobs?status=pending, running&sort= -created_at")
    assert response.status_code == 200, response.content


def test_a_date_offset_postgresql_cannot_store_is_normalised_not_a_500(world, api_as):
    response = api_as(world.member_a).get("/api/v1/jobs?from=2026-01-01T00:00:00%2B19:49")
    assert response.status_code == 200, response.content


def test_a_date_out_of_range_after_normalising_is_422(world, api_as):
    response = api_as(world.member_a).get("/api/v1/jobs?to=9999-12-31T23:00:00-05:00")
    assert list(_error(response, 422, "VALIDATION_ERROR")["details"]["fields"]) == ["to"]


# --- Routing and Host -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "patch", "put", "delete"])
def test_writes_to_an_unknown_api_path_are_404_not_a_csrf_refusal(world, method):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.admin_a)
    for path in ("/api/v1/nothing-here", "/api/v3/jobs", "/api/unknown"):
        _error(getattr(client, method)(path, "{}", content_type="application/json"), 404, "NOT_FOUND")


def test_a_bad_host_header_is_a_documented_400(world, api_as):
    response = api_as(world.member_a).get("/api/v1/org", HTTP_HOST="evil.example.com")
    _error(response, 400, "MALFORMED_REQUEST")
