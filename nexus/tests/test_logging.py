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
        ("key nx_live_AbCd1234.abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012345"),
        ("GET /invitations/eyJpIjoiMSJ9:1t0Zab:sIgNaTuRe/google", "eyJpIjoiMSJ9:1t0Zab:sIgNaTuRe"),
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


TRACE = "105445aa7843bc8bf206b12000100000"


def _request_line(capsys) -> dict:
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    (line,) = [line for line in lines if line.get("event") == "request"]
    return line


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"HTTP_X_CLOUD_TRACE_CONTEXT": f"{TRACE}/1;o=1"},
            {
                "logging.googleapis.com/trace": f"projects/nexus-prod/traces/{TRACE}",
                "logging.googleapis.com/spanId": "0000000000000001",
                "logging.googleapis.com/trace_sampled": True,
            },
        ),
        (
            {"HTTP_TRACEPARENT": f"00-{TRACE}-00f067aa0ba902b7-00"},
            {
                "logging.googleapis.com/trace": f"projects/nexus-prod/traces/{TRACE}",
                "logging.googleapis.com/spanId": "00f067aa0ba902b7",
                "logging.googleapis.com/trace_sampled": False,
            },
        ),
        ({"HTTP_X_CLOUD_TRACE_CONTEXT": f"{TRACE}\nforged=1"}, {}),
        ({"HTTP_X_CLOUD_TRACE_CONTEXT": "../../other-project/traces/x"}, {}),
        ({"HTTP_X_CLOUD_TRACE_CONTEXT": "0" * 32 + "/1"}, {}),
        ({}, {}),
    ],
    ids=["cloud-trace-context", "traceparent", "injected line", "not a trace id", "zero trace", "no header"],
)
def test_request_lines_link_to_the_trace_the_front_end_named(client, settings, capsys, headers, expected):
    settings.GOOGLE_CLOUD_PROJECT = "nexus-prod"
    configure_logging(level="INFO", fmt="json")
    client.get("/health", **headers)
    line = _request_line(capsys)
    assert {k: v for k, v in line.items() if k.startswith("logging.googleapis.com/")} == expected
    assert line["severity"] == "INFO"


def test_no_trace_fields_without_a_project(client, settings, capsys):
    settings.GOOGLE_CLOUD_PROJECT = ""
    configure_logging(level="INFO", fmt="json")
    client.get("/health", HTTP_X_CLOUD_TRACE_CONTEXT=f"{TRACE}/1;o=1")
    assert not [k for k in _request_line(capsys) if k.startswith("logging.googleapis.com/")]


def test_an_invitation_links_token_never_reaches_the_request_line(client, capsys):
    configure_logging(level="INFO", fmt="json")
    token = "eyJpIjoiMSJ9:1t0Zab:sIgNaTuRe-that-is-a-capability"
    client.get(f"/invitations/{token}")
    line = _request_line(capsys)
    assert line["path"] == "/invitations/[token]"
    assert token not in json.dumps(line)


def test_an_api_keys_prefix_and_an_invitations_id_are_kept():
    from nexus.logging import redact_text

    assert redact_text("key nx_live_AbCd1234 used") == "key nx_live_AbCd1234 used"
    path = "/api/v1/invitations/3f2a1b4c-1234-4abc-8def-0123456789ab/resend"
    assert redact_text(path) == path
