"""PostgreSQL or Redis down: every /api/ answer is the 503 envelope with Retry-After, in
DEBUG or not, wherever the failure happens (the caller is identified in middleware, before
any view); Django's debug page never appears. The outage is real: the connection points at
a port where nothing listens."""

import json
import urllib.error
import urllib.request

import pytest
from django.db import connection
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from nexus.tests.live import free_port, gunicorn_server

# A token that decodes and verifies, so the middleware goes on to look its caller up.
_CLAIMS = {"user_id": "00000000-0000-0000-0000-000000000001", "org": "00000000-0000-0000-0000-000000000002"}


def _bearer() -> str:
    token = AccessToken()
    for claim, value in _CLAIMS.items():
        token[claim] = value
    token["role"] = "admin"
    token["fam"] = "00000000-0000-0000-0000-000000000003"
    token["ver"] = 1
    return f"Bearer {token}"


@pytest.fixture
def database_down(django_db_setup, django_db_blocker):
    """The default connection points at a closed port for the test, then is put back."""
    with django_db_blocker.unblock():
        saved = dict(connection.settings_dict)
        connection.close()
        connection.settings_dict.update({"HOST": "127.0.0.1", "PORT": str(free_port())})
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)


def _client() -> Client:
    # Django's test client re-raises a request's uncaught exception; a real server does not.
    return Client(raise_request_exception=False)


def _assert_outage_envelope(response) -> None:
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) > 0
    body = response.json()
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    text = response.content.decode()
    for secret in ("Traceback", "DATABASE_URL", "Bearer", "127.0.0.1", "OperationalError"):
        assert secret not in text


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("method", ["get", "post"])
def test_database_down_is_a_503_envelope_on_the_api(database_down, settings, debug, method):
    settings.DEBUG = debug
    client = _client()
    call = getattr(client, method)
    kwargs = {"content_type": "application/json", "data": '{"text": "hello"}'} if method == "post" else {}
    response = call(
        "/api/v1/jobs" if method == "get" else "/api/v1/summarize", HTTP_AUTHORIZATION=_bearer(), **kwargs
    )
    _assert_outage_envelope(response)


@pytest.mark.parametrize("debug", [True, False])
def test_database_down_on_a_page_is_a_503_page_not_the_debug_page(database_down, settings, debug):
    settings.DEBUG = debug
    client = _client()
    client.cookies["sessionid"] = "a" * 32  # a signed-in visitor: the session is read from the database
    response = client.get("/")
    assert response.status_code == 503
    assert "Retry-After" in response
    text = response.content.decode()
    assert "Traceback" not in text
    assert "DATABASE_URL" not in text


@pytest.mark.urls("nexus.tests.urls")
@pytest.mark.parametrize("debug", [True, False])
def test_redis_down_where_a_request_needs_it_is_a_503_envelope(settings, debug):
    settings.DEBUG = debug
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    _assert_outage_envelope(_client().get("/api/v1/test/needs-redis"))


@pytest.mark.django_db
@pytest.mark.urls("nexus.tests.urls")
def test_an_unexpected_error_under_debug_is_the_500_envelope_not_the_debug_page(settings):
    settings.DEBUG = True
    response = _client().get("/api/v1/test/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "secret internal detail" not in response.content.decode()


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def gunicorn_without_database(request):
    """The app under gunicorn (the production server) whose DATABASE_URL names a port where
    nothing listens: PostgreSQL is down from the first request."""
    extra = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nexus_down",
        "DEBUG": "true" if request.param else "false",
    }
    with gunicorn_server(extra, log_name="outage") as (host, port):
        yield f"http://{host}:{port}"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/api/v1/jobs", None), ("POST", "/api/v1/summarize", b'{"text": "hello"}')],
)
def test_under_gunicorn_database_down_is_a_503_envelope(gunicorn_without_database, method, path, body):
    request = urllib.request.Request(  # nosec B310 - a local server this test started
        gunicorn_without_database + path,
        data=body,
        method=method,
        headers={"Authorization": _bearer(), "Content-Type": "application/json", "Host": "localhost"},
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=20)  # nosec B310
    response = answer.value
    assert response.code == 503
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) > 0
    text = response.read().decode()
    assert json.loads(text)["error"]["code"] == "SERVICE_UNAVAILABLE"
    for secret in ("Traceback", "DATABASE_URL", "Bearer", "nexus_down", "OperationalError"):
        assert secret not in text
