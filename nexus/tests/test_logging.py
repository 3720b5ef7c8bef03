"""One structured log line per request, with the fields an on-call engineer filters by."""

import json
import logging

import pytest

from nexus.logging import configure_logging

pytestmark = pytest.mark.django_db


def _request_events(caplog):
    return [r.msg for r in caplog.records if r.name == "nexus.request" and isinstance(r.msg, dict)]


def test_one_line_per_request_with_caller_fields(world, api_as, caplog):
    caplog.set_level(logging.INFO, logger="nexus.request")
    response = api_as(world.member_a).get("/api/v1/org/members")
    events = _request_events(caplog)
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "request"
    assert event["request_id"] == response["X-Request-ID"]
    assert event["org_id"] == str(world.org_a.id)
    assert event["user_id"] == str(world.member_a.pk)
    assert event["route"] == "^api/(?P<version>v1|v2)/org/members"
    assert event["method"] == "GET"
    assert event["status"] == 200
    assert isinstance(event["duration_ms"], float)


def test_anonymous_request_logs_no_caller(client, caplog):
    caplog.set_level(logging.INFO, logger="nexus.request")
    client.get("/health")
    (event,) = _request_events(caplog)
    assert event["org_id"] is None
    assert event["user_id"] is None
    assert event["status"] == 200


def test_json_format_renders_one_json_object_per_line(capsys):
    import structlog

    configure_logging(level="INFO", fmt="json")
    structlog.get_logger("probe").info("hello", answer=42)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    parsed = json.loads(line)
    assert parsed["event"] == "hello"
    assert parsed["answer"] == 42
    assert parsed["level"] == "info"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "accessToken",
        "X-Api-Key",
        "x-auth-token",
        "private_key",
        "clientSecret",
        "email",
        "webhook_secret",
    ],
)
def test_a_value_under_a_secret_or_personal_key_is_never_written(key):
    from nexus.logging import REDACTED, redact_secrets

    assert redact_secrets(None, "info", {key: "s3cr3t-value"})[key] == REDACTED


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("mail ann@example.com now", "ann@example.com"),
        ("Authorization: Bearer abcdefgh12345", "abcdefgh12345"),
        ("postgres://user:hunter2@db:5432/x", "hunter2"),
        ("https://api.example.com/items?api_key=SEKRET&page=2", "SEKRET"),
        ("https://api.example.com/items?page=2&access_token=T0KEN", "T0KEN"),
        ("key sk_live_abcdefghijkl in a message", "sk_live_abcdefghijkl"),
        ("google AIzaSyA1234567890abcdefghijklmnopqrstu", "AIzaSyA1234567890abcdefghijklmnopqrstu"),
    ],
)
def test_secrets_and_addresses_inside_text_are_masked(text, hidden):
    from nexus.logging import redact_secrets

    assert hidden not in redact_secrets(None, "info", {"error": text})["error"]


def test_counts_and_ids_that_merely_mention_a_secret_are_kept():
    from nexus.logging import redact_secrets

    kept = redact_secrets(None, "info", {"token_families": 3, "session_id": "cs_test_1", "page": "2"})
    assert kept == {"token_families": 3, "session_id": "cs_test_1", "page": "2"}


def test_json_lines_carry_a_severity_for_collectors(capsys):
    import structlog

    configure_logging(level="INFO", fmt="json")
    structlog.get_logger("probe").warning("careful")
    parsed = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert parsed["severity"] == "WARNING"
