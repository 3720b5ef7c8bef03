"""The JSON parser's depth check strips string literals with a regular expression before it
counts brackets. An unterminated string full of escaped quotes (`"\"\"\"...`) makes that
expression rescan the rest of the body from every quote: quadratic time, with the GIL held.
Any member of any organisation can send such a body to any JSON endpoint; at the 1 MiB body
limit one request holds a web worker for tens of minutes (gunicorn's timeout then kills the
worker and every other organisation's request on it). Refusing a body must cost time linear
in its size."""

from __future__ import annotations

import time

import pytest

from nexus.api.parsers import StrictJSONParser

pytestmark = pytest.mark.django_db

# 64 KiB: well under API_MAX_BODY_BYTES (1 MiB). Linear work on it takes milliseconds.
BODY = ('"' + '\\"' * 32 * 1024).encode()


def test_parser_rejects_unterminated_escaped_string_in_linear_time():
    import io

    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the time is the point
        StrictJSONParser().parse(io.BytesIO(BODY), parser_context={"encoding": "utf-8"})
    assert time.monotonic() - started < 1.0


def test_a_member_cannot_hold_a_web_worker_with_one_json_body(world, api_as):
    client = api_as(world.member_a)
    started = time.monotonic()
    response = client.post("/api/v1/summarize", data=BODY, content_type="application/json")
    elapsed = time.monotonic() - started
    assert response.status_code in (400, 422)
    assert elapsed < 1.0, f"one 64 KiB body took {elapsed:.1f} s to refuse"
