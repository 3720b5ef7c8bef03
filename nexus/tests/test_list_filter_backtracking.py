"""List filters such as ?status=pending,running are checked against the pattern the OpenAPI
document publishes (nexus.api.query.list_pattern). A blank item must have one way to match:
with `ws* value? ws*` the spaces of each blank item could be split k+1 ways, and a value
whose end fails the pattern (a no-break space, which str.strip() removes but the pattern
does not allow) made the engine try every combination, (k+1)**items attempts: 19 items took
minutes. The bounds below guard against that class of cost, not a speed target."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from nexus.api.query import list_pattern

pytestmark = pytest.mark.django_db

# 19 blank items: minutes with the backtracking pattern; microseconds when linear.
HOSTILE = "  ," * 19 + "\u00a0"


def test_list_pattern_fails_fast_on_blank_items():
    import re

    pattern = list_pattern({"pending", "running", "succeeded", "failed"})
    started = time.monotonic()
    re.fullmatch(pattern, HOSTILE)
    assert time.monotonic() - started < 5.0


def test_a_member_cannot_hold_a_web_worker_with_a_status_filter(world, api_as):
    started = time.monotonic()
    response = api_as(world.member_a).get(f"/api/v1/jobs?status={quote(HOSTILE)}")
    elapsed = time.monotonic() - started
    assert response.status_code == 422
    assert elapsed < 5.0, f"one GET with a 58-character filter took {elapsed:.1f} s"
