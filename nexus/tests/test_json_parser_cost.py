"""Refusing a JSON body costs time linear in its size. The depth check removes string
literals before it counts brackets; a backtracking pattern rescanned the rest of the body
from every quote of an unterminated `"\\"\\"\\"…`, so one 1 MiB body held a web worker for
many minutes. The bound below is a guard against that class of cost (seconds against a
minute or more), not a speed target: speed is measured in bench/."""

from __future__ import annotations

import time

import pytest

from nexus.api.parsers import StrictJSONParser

pytestmark = pytest.mark.django_db

# 192 KiB, well under API_MAX_BODY_BYTES (1 MiB): over a minute for the quadratic check,
# milliseconds for a linear one.
BODY = ('"' + '\\"' * 96 * 1024).encode()


def test_parser_rejects_unterminated_escaped_string_in_linear_time():
    import io

    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the time is the point
        StrictJSONParser().parse(io.BytesIO(BODY), parser_context={"encoding": "utf-8"})
    assert time.monotonic() - started < 5.0


def test_a_member_cannot_hold_a_web_worker_with_one_json_body(world, api_as):
    client = api_as(world.member_a)
    started = time.monotonic()
    response = client.post("/api/v1/summarize", data=BODY, content_type="application/json")
    elapsed = time.monotonic() - started
    assert response.status_code in (400, 422)
    assert elapsed < 5.0, f"one 192 KiB body took {elapsed:.1f} s to refuse"
