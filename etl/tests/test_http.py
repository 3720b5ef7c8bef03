"""Fetching a data source over HTTP: a redirect is a failed run that says where the source
moved, never a success with nothing in it (redirects are not followed, so an answer with
no body would otherwise read as an empty source)."""

import pytest

from etl.http import FetchError, SourceHttp
from etl.services import etl_run_source, etl_source_create
from etl.tests.conftest import API_MAPPING, RSS_MAPPING
from nexus.tests.stub_server import StubServer


@pytest.fixture
def moved():
    """A source that answers every GET with a redirect to somewhere else."""
    with StubServer() as server:
        server.route_prefix(
            "GET", "/", lambda request: (302, {"Location": "https://elsewhere.test/feed"}, "")
        )
        yield server


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_naming_where_it_points(status, settings):
    with StubServer() as server:
        server.route(
            "GET", "/feed", lambda request: (status, {"Location": "https://elsewhere.test/feed"}, "")
        )
        http = SourceHttp(requests_per_second=0)
        try:
            with pytest.raises(FetchError) as raised:
                http.get(f"{server.url}/feed")
        finally:
            http.close()
    assert str(raised.value) == (
        f"The source redirected to https://elsewhere.test/feed (HTTP {status}) from {server.url}/feed; "
        "redirects are not followed. Use the final URL."
    )
    assert len(server.requests) == 1  # not retried, not followed


def test_a_feed_that_redirects_fails_its_run(org_a, moved):
    source = etl_source_create(
        name="Moved feed", kind="rss", config={"url": f"{moved.url}/feed.xml"}, field_mapping=RSS_MAPPING
    )
    run = etl_run_source(source=source)
    assert run.status == "failed"
    assert run.inserted == 0
    assert "redirected to https://elsewhere.test/feed (HTTP 302)" in run.error
    assert "redirects are not followed" in run.error


def test_an_api_source_that_redirects_fails_its_run(org_a, moved):
    source = etl_source_create(
        name="Moved API",
        kind="api",
        config={"url": f"{moved.url}/items", "page_size": 100},
        field_mapping=API_MAPPING,
        requests_per_second=50,
    )
    run = etl_run_source(source=source)
    assert run.status == "failed"
    assert run.fetched == 0
    assert "redirected to https://elsewhere.test/feed (HTTP 302)" in run.error
