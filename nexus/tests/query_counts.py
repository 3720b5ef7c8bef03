"""The query-count rule (docs/specs/foundation.md, "Query counts"): a list answers in a
number of queries that does not grow with its rows. Each app's `tests/test_query_counts.py`
measures a request with a few rows, adds more, and asserts the count did not grow."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext


def _measured(fetch: Callable, shown: Callable) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as captured:
        response = fetch()
    assert response.status_code == 200, response.content[:500]
    return len(captured), shown(response)


def assert_queries_do_not_grow(
    fetch: Callable, add_rows: Callable[[], None], shown: Callable, django_assert_max_num_queries
) -> None:
    """`fetch()` answers a list; `shown(response)` counts the rows it shows; `add_rows()`
    adds more of them. The count of queries with more rows is at most the count before
    (a warm-up request first, so one-off lookups of the first request do not count)."""
    fetch()
    before, rows_before = _measured(fetch, shown)
    add_rows()
    with django_assert_max_num_queries(before):
        response = fetch()
    assert response.status_code == 200, response.content[:500]
    # Otherwise the test proves nothing: the new rows must be in the answer.
    assert shown(response) > rows_before, (shown(response), rows_before)


def api_rows(response) -> int:
    return len(response.json()["data"])


def html_count(marker: str) -> Callable:
    """shown() for a page: how many times `marker` appears in it."""
    return lambda response: response.content.decode().count(marker)
