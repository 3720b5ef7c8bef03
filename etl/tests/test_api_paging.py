"""The API connector's paging, read through the source's typed configuration: the request it
builds, how it reads one page, and how it decides there is a next page (or stops)."""

import pytest

from etl.config import ApiSourceConfig, CsvSourceConfig, source_config_parse, source_config_read
from etl.connectors.api import ApiConnector, Position
from etl.http import FetchError
from etl.models import DataSource, Record
from etl.services import etl_run_source
from etl.tests.conftest import API_MAPPING
from etl.tests.factories import api_source_create
from nexus.api.errors import ValidationFailed
from nexus.tests.stub_server import StubServer

pytestmark = pytest.mark.django_db


def _item(n: int) -> dict:
    return {"id": f"i{n}", "title": f"Item {n}", "updated_at": f"2026-01-0{1 + n % 9}T00:00:00+00:00"}


class Pages:
    """An API whose answer to page N is `answer(page, per_page, query)`; records requests."""

    def __init__(self, answer):
        self.answer = answer
        self.server = StubServer()
        self.server.route_prefix("GET", "/", self._handle)

    def _handle(self, request):
        query = {key: values[0] for key, values in request.query.items()}
        return 200, {}, self.answer(query)

    @property
    def queries(self) -> list[dict]:
        return [{k: v[0] for k, v in r.query.items()} for r in self.server.requests]

    def __enter__(self):
        self.server.__enter__()
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)


def _source(url: str, **config) -> DataSource:
    return api_source_create(url=url, name="Paged", config=config, requests_per_second=100)


def test_the_request_uses_the_configured_parameter_names_and_the_records_path(org_a):
    def answer(query):
        page = int(query["p"])
        items = [_item(n) for n in range((page - 1) * 2, min(page * 2, 3))]
        return {"result": {"items": items}}

    with Pages(answer) as api:
        source = _source(
            f"{api.server.url}/items",
            page_param="p",
            page_size_param="n",
            page_size="2",
            updated_since_param="since",
            records_path="result.items",
        )
        first = etl_run_source(source=source)
        assert (first.status, first.inserted) == ("succeeded", 3), first.error
        assert api.queries == [{"p": "1", "n": "2"}, {"p": "2", "n": "2"}]
        etl_run_source(source=source)
    assert api.queries[2] == {"p": "1", "n": "2", "since": "2026-01-03T00:00:00+00:00"}


def test_an_empty_records_path_reads_an_answer_that_is_the_list_itself(org_a):
    with Pages(lambda query: [_item(1), "not an item", _item(2)]) as api:
        run = etl_run_source(source=_source(api.server.url, records_path=""))
    assert (run.status, run.fetched) == ("succeeded", 2), run.error
    assert sorted(Record.objects.values_list("external_id", flat=True)) == ["i1", "i2"]


def test_a_full_page_that_says_there_is_no_next_page_is_the_last(org_a):
    with Pages(lambda query: {"data": [_item(1), _item(2)], "next_page": None}) as api:
        run = etl_run_source(source=_source(api.server.url, page_size=2))
        assert run.status == "succeeded"
        assert len(api.queries) == 1


def test_a_full_page_with_a_next_page_is_followed_until_a_short_one(org_a):
    def answer(query):
        page = int(query["page"])
        return {"data": [_item(page * 10 + n) for n in range(2 if page < 3 else 1)], "next_page": page + 1}

    with Pages(answer) as api:
        run = etl_run_source(source=_source(api.server.url, page_size=2))
    assert (run.status, run.fetched, len(api.queries)) == ("succeeded", 5, 3)


@pytest.mark.parametrize(
    "body,config,error",
    [
        ("<html>", {}, "The API did not answer with JSON."),
        ({"items": []}, {}, "The API's answer has no list at 'data'."),
        (
            {"data": {"items": "x"}},
            {"records_path": "data.items"},
            "The API's answer has no list at 'data.items'.",
        ),
    ],
)
def test_an_answer_without_its_list_fails_the_run(org_a, body, config, error):
    with Pages(lambda query: body) as api:
        run = etl_run_source(source=_source(api.server.url, **config))
    assert (run.status, run.error) == ("failed", error)


def test_a_run_stops_at_max_pages_and_at_a_cap_lowered_since_the_source_was_saved(org_a, settings):
    with Pages(lambda query: {"data": [_item(int(query["page"]))], "next_page": 0}) as api:
        source = _source(api.server.url, page_size=1, max_pages=3)
        run = etl_run_source(source=source)
        assert (run.status, run.error) == (
            "failed",
            "Stopped after 3 pages; the API never reported its last page.",
        )
        assert len(api.queries) == 3

        settings.ETL_MAX_PAGES = 2  # the operator lowered the cap after the source was saved
        api.server.requests.clear()
        again = etl_run_source(source=source)
    assert again.error == "Stopped after 2 pages; the API never reported its last page."
    assert [query["page"] for query in api.queries] == ["1", "2"]  # nothing committed: from page 1


def test_a_run_resumes_inside_a_page_at_the_cursors_offset(org_a):
    with Pages(lambda query: {"data": [_item(1), _item(2), _item(3)]}) as api:
        source = _source(api.server.url, page_size=5)
        connector = ApiConnector(source)
        try:
            cursor = {"updated_since": None, "page": 1, "offset": 1, "max_seen": "2026-01-09T00:00:00+00:00"}
            items = list(connector.items(cursor))
        finally:
            connector.close()
    assert [item["id"] for item, _ in items] == ["i2", "i3"]
    assert [c["offset"] for _, c in items] == [2, 3]
    assert {c["max_seen"] for _, c in items} == {"2026-01-09T00:00:00+00:00"}
    assert connector.final_cursor == {"updated_since": "2026-01-09T00:00:00+00:00", "page": 1, "offset": 0}


def test_a_slice_out_of_pages_stops_between_pages_with_a_resume_cursor(org_a):
    with Pages(
        lambda query: {"data": [_item(int(query["page"]) * 2), _item(int(query["page"]) * 2 + 1)]}
    ) as api:
        source = _source(api.server.url, page_size=2)
        connector = ApiConnector(source)
        connector.budget.pages = 1
        try:
            items = list(connector.items({}))
        finally:
            connector.close()
    assert len(items) == 2
    assert connector.budget.cut
    assert connector.resume_cursor == {
        "updated_since": None,
        "page": 2,
        "offset": 0,
        "max_seen": "2026-01-04T00:00:00+00:00",
    }


def test_the_request_parameters_of_a_position():
    config = ApiSourceConfig.model_validate({"url": "https://x.test", "page_size": "20", "page_param": "p"})
    connector = ApiConnector.__new__(ApiConnector)
    connector.config = config
    assert connector.request_params(Position(since=None, page=3, offset=0, newest=None)) == {
        "p": 3,
        "per_page": 20,
    }
    assert connector.request_params(Position(since="2026-01-01", page=1, offset=4, newest=None)) == {
        "p": 1,
        "per_page": 20,
        "updated_since": "2026-01-01",
    }


def test_a_position_from_an_empty_or_older_cursor_starts_at_page_one():
    assert Position.from_cursor({}) == Position(since=None, page=1, offset=0, newest=None)
    assert Position.from_cursor({"updated_since": "t", "page": "4"}) == Position(
        since="t", page=4, offset=0, newest="t"
    )


# --- The typed view a run reads -----------------------------------------------------------------


def test_the_typed_api_config_has_the_defaults_a_run_has_always_used():
    config = source_config_read(kind="api", config={"url": "https://x.test/items", "records_path": None})
    assert isinstance(config, ApiSourceConfig)
    assert (config.api_key_header, config.page_param, config.page_size_param) == (
        "X-API-Key",
        "page",
        "per_page",
    )
    assert (config.page_size, config.updated_since_param, config.updated_field) == (
        100,
        "updated_since",
        "updated_at",
    )
    assert config.records_path == ""
    assert config.max_pages is None
    assert source_config_read(kind="api", config={"url": "https://x.test"}).records_path == "data"
    blank = source_config_read(
        kind="api", config={"url": "https://x.test", "page_param": "", "updated_field": None}
    )
    assert (blank.page_param, blank.updated_field) == ("page", "updated_at")


def test_the_typed_config_is_frozen_and_keeps_unknown_keys():
    config = source_config_read(kind="csv", config={"delimiter": ";", "note": "kept"})
    assert isinstance(config, CsvSourceConfig)
    assert config.delimiter == ";"
    assert config.model_extra == {"note": "kept"}
    assert source_config_read(kind="csv", config={"delimiter": ""}).delimiter == ","
    with pytest.raises(Exception, match="frozen"):
        config.delimiter = ","


def test_page_limit_is_max_pages_never_above_the_cap(settings):
    settings.ETL_MAX_PAGES = 50
    assert source_config_read(kind="api", config={"url": "https://x.test"}).page_limit == 50
    assert source_config_read(kind="api", config={"url": "https://x.test", "max_pages": 7}).page_limit == 7
    assert source_config_read(kind="api", config={"url": "https://x.test", "max_pages": 80}).page_limit == 50


def test_a_run_reads_without_the_checks_of_the_moment_that_saving_makes(org_a, files):
    """DNS, the data directory and the environment's keys are checked when the run fetches;
    a stored row with the old api_key_env stays readable (its run decides)."""
    stored = {"url": "https://does-not-resolve.invalid/x", "api_key_env": "ETL_SOURCE_KEY__X__Y"}
    assert source_config_read(kind="api", config=stored).url == stored["url"]
    assert source_config_read(kind="csv", config={"path": "gone.csv"}).path == "gone.csv"
    assert source_config_read(
        kind="api", config={"url": "https://x.test", "api_key_name": "NOT_SET"}
    ).api_key_name
    for kind, config in [
        ("api", stored),
        ("csv", {"path": "gone.csv"}),
        ("api", {"url": "https://x.test", "api_key_name": "NOT_SET"}),
    ]:
        with pytest.raises(ValidationFailed):
            source_config_parse(kind=kind, config=config)


def test_a_stored_config_not_of_its_kinds_shape_fails_the_run_with_the_reason(org_a):
    source = DataSource.objects.create(
        name="Hand-written",
        kind="api",
        config={"url": "https://x.test", "page_size": "many"},
        field_mapping=API_MAPPING,
    )
    run = etl_run_source(source=source)
    assert run.status == "failed"
    assert run.error == (
        "The source's configuration is not valid: config.page_size must be a whole number from 1 to 1000."
    )
    with pytest.raises(FetchError) as unreadable:
        source_config_read(kind="api", config={})
    assert str(unreadable.value) == "The source's configuration is not valid: An API source needs config.url."
