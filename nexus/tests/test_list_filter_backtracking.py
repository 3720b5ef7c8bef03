"""List filters such as ?status=pending,running are checked against the pattern the OpenAPI
document publishes (nexus.api.query.list_pattern). Each item is `[ws]*(?:a|b)?[ws]*`: the
spaces of an item can be split between its two runs of whitespace in k+1 ways, so a value
whose end fails the pattern makes the regex engine try every split of every item,
(k+1)**items attempts. `status` made of short blank items ending in a character str.strip()
removes but the pattern does not allow (a no-break space) passes the known-values check and
reaches the pattern: 14 items take about half a second, each further item multiplies that by
three, 40 items (a 120-character query) never finish. Any member of any organisation can
hold a web worker with one GET. The check must take time linear in the value."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from nexus.api.query import list_pattern

pytestmark = pytest.mark.django_db

# 16 blank items: about 5 s with the backtracking pattern; microseconds when linear.
HOSTILE = "  ," * 16 + "\u00a0"


def test_list_pattern_fails_fast_on_blank_items():
    import re

    pattern = list_pattern({"pending", "running", "succeeded", "failed"})
    started = time.monotonic()
    re.fullmatch(pattern, HOSTILE)
    assert time.monotonic() - started < 0.1


def test_a_member_cannot_hold_a_web_worker_with_a_status_filter(world, api_as):
    started = time.monotonic()
    response = api_as(world.member_a).get(f"/api/v1/jobs?status={quote(HOSTILE)}")
    elapsed = time.monotonic() - started
    assert response.status_code == 422
    assert elapsed < 1.0, f"one GET with a 49-character filter took {elapsed:.1f} s"
