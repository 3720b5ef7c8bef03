"""Runs end to end in-process: raw then unified, quarantine, incremental, resume, drift,
rate limits and retries against the mock API over real HTTP."""

import itertools
import time
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from etl.models import Checkpoint, DriftEvent, QuarantinedItem, RawApiRecord, RawCsvRecord, RawRssItem, Record
from etl.owned import NO_SUCH_FILE
from etl.services import _lock_key, etl_run_source, etl_source_create
from etl.tests.conftest import RSS_MAPPING
from etl.tests.factories import api_source_create, csv_source_create
from nexus.api.errors import Conflict

pytestmark = pytest.mark.django_db


def _csv_source(path, **kwargs):
    return csv_source_create(config={"path": path.name}, **kwargs)


def _record(external_id):
    return Record.objects.get(external_id=external_id)


def test_sample_csv_first_run(org_a, files):
    source = _csv_source(files / "articles.csv")
    run = etl_run_source(source=source)
    assert run.status == "succeeded", run.error
    assert (run.fetched, run.inserted, run.updated, run.skipped, run.quarantined) == (12, 7, 0, 2, 3)
    assert RawCsvRecord.objects.filter(source=source).count() == 10  # the exact duplicate stored once
    assert Record.objects.filter(source=source).count() == 7

    launch = _record("A-001")
    assert launch.title == "Launch day recap"
    assert launch.tags == ["product", "launch"]
    assert launch.published_at == datetime(2026, 1, 5, tzinfo=UTC)
    assert launch.extra == {"Page Views": 1234}
    assert _record("A-002").published_at == datetime(2026, 1, 5, tzinfo=UTC)
    assert _record("A-002").extra == {"Page Views": 12500}
    revised = _record("A-003")
    assert revised.title == "Support trends (revised)"
    assert revised.extra == {"Page Views": 1010}
    assert revised.published_at == datetime(2026, 1, 7, 14, 30, tzinfo=UTC)
    assert _record("A-004").published_at == datetime(2026, 1, 8, 7, 15, tzinfo=UTC)
    assert _record("A-005").published_at == datetime(2026, 1, 9, 9, 13, 20, tzinfo=UTC)
    assert _record("A-005").extra == {"Page Views": None}
    roadmap = _record("A-006")
    assert roadmap.body == ""
    assert roadmap.author == ""
    assert roadmap.published_at == datetime(2026, 1, 10, tzinfo=UTC)
    assert _record("A-009").extra == {"Page Views": 1000000}

    reasons = sorted(q.reason for q in QuarantinedItem.objects.filter(run=run))
    assert any("unrecognised date 'not a date'" in r for r in reasons)
    assert any("missing required field 'title'" in r for r in reasons)
    assert any("missing required field 'external_id'" in r for r in reasons)
    new_fields = set(DriftEvent.objects.filter(run=run, kind="new").values_list("field", flat=True))
    assert new_fields == {"Page Views"}


def test_second_run_over_unchanged_data_inserts_nothing(org_a, files):
    source = _csv_source(files / "articles.csv")
    etl_run_source(source=source)
    started = time.perf_counter()
    again = etl_run_source(source=source)
    assert again.status == "succeeded"
    assert (again.fetched, again.inserted, again.updated) == (0, 0, 0)
    assert time.perf_counter() - started < 5
    assert again.checkpoint_before == again.checkpoint_after
    assert again.checkpoint_after["complete"]


def test_changed_file_updates_only_what_changed(org_a, files):
    path = files / "articles.csv"
    source = _csv_source(path)
    etl_run_source(source=source)
    with path.open("a") as handle:
        handle.write("A-010,New row,Fresh content.,2026-01-14,Jo Lin,news,5\n")
        handle.write("A-001,Launch day recap,We shipped the new onboarding flow.,")
        handle.write('2026-01-05,Ann Lee,"product, launch",1300\n')
    run = etl_run_source(source=source)
    assert (run.inserted, run.updated) == (1, 1)
    assert _record("A-001").extra == {"Page Views": 1300}
    assert _record("A-010").title == "New row"
    assert _record("A-001").first_seen_run_id != run.pk
    assert _record("A-001").last_updated_run_id == run.pk


def test_items_rejected_again_unchanged_are_skipped_not_quarantined_again(org_a, files):
    path = files / "articles.csv"
    source = _csv_source(path)
    first = etl_run_source(source=source)
    assert first.quarantined == 3

    # The file changes, so every row is read again; its three bad rows have not changed.
    with path.open("a") as handle:
        handle.write("A-010,New row,Fresh content.,2026-01-14,Jo Lin,news,5\n")
    second = etl_run_source(source=source)
    assert second.status == "succeeded", second.error
    assert (second.fetched, second.inserted, second.updated, second.quarantined) == (13, 1, 0, 0)
    assert second.skipped == 12  # 7 stored records, the duplicate row and the 3 rejected again
    assert QuarantinedItem.objects.filter(source=source).count() == 3
    assert not QuarantinedItem.objects.filter(run=second).exists()

    # A bad row that changes is a new problem: quarantined once, with its own reason.
    text = path.read_text().replace("not a date", "still not a date")
    path.write_text(text + "A-011,Another,Body.,2026-01-15,Jo Lin,news,6\n")
    third = etl_run_source(source=source)
    assert (third.inserted, third.quarantined) == (1, 1)
    (item,) = QuarantinedItem.objects.filter(run=third)
    assert item.external_id == "A-007"
    assert "still not a date" in item.reason
    assert QuarantinedItem.objects.filter(source=source).count() == 4


def test_resume_after_an_injected_failure_has_no_duplicates_and_no_gaps(org_a, files, settings):
    settings.ETL_BATCH_SIZE = 500
    path = files / "big.csv"
    with path.open("w") as handle:
        handle.write("id,title,published\n")
        for i in range(1, 2501):
            handle.write(f"r{i},Row {i},2026-01-01\n")
    source = etl_source_create(
        name="Big",
        kind="csv",
        config={"path": path.name},
        field_mapping={"external_id": "id", "title": "title"},
    )
    failed = etl_run_source(source=source, fail_after=1200)
    assert failed.status == "failed"
    assert "1200 items" in failed.error
    assert Record.objects.filter(source=source).count() == 1200
    assert Checkpoint.objects.get(source=source).cursor["row"] == 1200

    resumed = etl_run_source(source=source)
    assert resumed.status == "succeeded"
    assert resumed.trigger == "resume"
    assert resumed.checkpoint_before["row"] == 1200
    assert (resumed.fetched, resumed.inserted, resumed.skipped) == (1300, 1300, 0)
    ids = set(Record.objects.filter(source=source).values_list("external_id", flat=True))
    assert ids == {f"r{i}" for i in range(1, 2501)}
    assert RawCsvRecord.objects.filter(source=source).count() == 2500


def test_rss_sample_then_only_newer_items(org_a, files):
    source = etl_source_create(
        name="Feed", kind="rss", config={"path": "feed.xml"}, field_mapping=RSS_MAPPING
    )
    run = etl_run_source(source=source)
    assert (run.status, run.inserted) == ("succeeded", 3)
    assert RawRssItem.objects.filter(source=source).count() == 3
    post = Record.objects.get(external_id="https://example.com/posts/2")
    assert post.published_at == datetime(2026, 1, 6, 21, 30, tzinfo=UTC)
    assert Record.objects.get(external_id="https://example.com/posts/1").tags == ["release", "product"]
    again = etl_run_source(source=source)
    assert (again.fetched, again.inserted) == (0, 0)


def _api_source(mock_api, **extra):
    return api_source_create(
        url=mock_api.url, config={"page_size": 100}, api_key="test-key", requests_per_second=50, **extra
    )


def test_api_source_pages_with_the_key_and_then_asks_only_for_changes(org_a, mock_api):
    source = _api_source(mock_api)
    run = etl_run_source(source=source)
    assert (run.status, run.fetched, run.inserted) == ("succeeded", 250, 250)
    assert [r["query"]["page"] for r in mock_api.requests] == ["1", "2", "3"]
    assert Record.objects.get(external_id="item-00002").extra["score"] == 2000
    assert RawApiRecord.objects.filter(source=source).count() == 250

    mock_api.requests.clear()
    again = etl_run_source(source=source)
    assert (again.inserted, again.updated) == (0, 0)
    assert mock_api.requests[0]["query"]["updated_since"] == "2026-01-01T04:10:00+00:00"

    mock_api.count = 260
    third = etl_run_source(source=source)
    assert third.inserted == 10
    assert Record.objects.filter(source=source).count() == 260


def test_api_key_is_sent_and_never_shown(org_a, mock_api):
    source = _api_source(mock_api)
    source.api_key_encrypted = source.api_key_encrypted  # stored encrypted
    assert "test-key" not in source.api_key_encrypted
    mock_api.api_key = "another-key"
    run = etl_run_source(source=source)
    assert run.status == "failed"
    assert "HTTP 401" in run.error
    assert "test-key" not in run.error


def test_429_and_5xx_are_retried_and_retry_after_is_honoured(org_a, mock_api):
    mock_api.retry_after = "1"
    mock_api.scripted = [429, 503, 502]
    source = _api_source(mock_api)
    run = etl_run_source(source=source)
    assert run.status == "succeeded"
    assert run.inserted == 250
    first, second = mock_api.requests[0]["at"], mock_api.requests[1]["at"]
    assert (second - first).total_seconds() >= 1.0  # waited as told by Retry-After


def test_giving_up_after_the_retries_fails_the_run(org_a, mock_api, settings):
    settings.ETL_HTTP_RETRIES = 2
    mock_api.scripted = [503, 503, 503]
    run = etl_run_source(source=_api_source(mock_api))
    assert run.status == "failed"
    assert "after 3 attempts (last: HTTP 503)" in run.error


def test_per_source_rate_limit_spaces_requests(org_a, mock_api):
    source = _api_source(mock_api)
    source.requests_per_second = 5
    source.save()
    etl_run_source(source=source)
    times = [r["at"] for r in mock_api.requests]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert min(gaps) >= 0.19


def test_drift_renamed_missing_and_new_fields(org_a):
    from etl.mock_api import MockApi

    with MockApi(api_key="test-key", items=20, renames={"title": "item_title", "author": "writer"}) as api:
        source = _api_source(api)
        run = etl_run_source(source=source)
    assert run.status == "succeeded" and run.inserted == 20, (run.fetched, run.quarantined, run.error)
    events = {(e.kind, e.field): e for e in DriftEvent.objects.filter(run=run)}
    renamed = events[("renamed", "title")]
    assert renamed.matched_to == "item_title"
    assert renamed.confidence >= 85
    assert ("missing", "author") in events
    assert ("new", "writer") in events
    assert ("new", "score") in events
    assert Record.objects.get(external_id="item-00001").title == "Item number 1"
    assert run.drift_warnings == len(events)


def test_a_source_never_runs_twice_at_once(org_a, files):
    source = _csv_source(files / "articles.csv")
    key = _lock_key(source)
    db = connection.settings_dict
    holder = psycopg.connect(
        host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"], dbname=db["NAME"], autocommit=True
    )
    try:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
        with pytest.raises(Conflict):
            etl_run_source(source=source)
        holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
    finally:
        holder.close()
    assert etl_run_source(source=source).status == "succeeded"


def test_paths_outside_the_allowed_roots_fail_the_run(org_a, files):
    source = _csv_source(files / "articles.csv")
    source.config = {"path": "/etc/passwd"}
    source.save()
    run = etl_run_source(source=source)
    assert run.status == "failed"
    assert run.error == NO_SUCH_FILE


def test_nul_characters_are_removed_not_fatal(org_a, files):
    path = files / "nul.csv"
    path.write_text("id,title\n1,ok\n2,bad\x00value\n3,fine\n")
    source = etl_source_create(
        name="Nul",
        kind="csv",
        config={"path": path.name},
        field_mapping={"external_id": "id", "title": "title"},
    )
    run = etl_run_source(source=source)
    assert run.status == "succeeded", run.error
    assert run.inserted == 3
    assert Record.objects.get(source=source, external_id="2").title == "badvalue"


def test_an_api_that_ignores_the_page_parameter_is_stopped(org_a):
    from etl.mock_api import MockApi

    with MockApi(api_key="test-key", items=250, ignore_page=True) as api:
        run = etl_run_source(source=_api_source(api))
    assert run.status == "failed"
    assert "same page twice" in run.error


def test_an_oversized_answer_is_refused_while_it_is_read(org_a, mock_api, settings):
    settings.ETL_MAX_FILE_BYTES = 2_000
    run = etl_run_source(source=_api_source(mock_api))
    assert run.status == "failed"
    assert "larger than the limit" in run.error


def test_drift_after_the_first_batch_is_matched_and_reported_once(org_a, settings):
    """From item 131 on, the API calls `title` item_title, `author` writer and `score`
    popularity: batch 4 (items 121-160) mixes both shapes, batch 5 has only the new one."""
    from etl.mock_api import MockApi

    settings.ETL_BATCH_SIZE = 40
    renames = {"title": "item_title", "author": "writer", "score": "popularity"}
    with MockApi(api_key="test-key", items=200, renames=renames, renames_from=131) as api:
        run = etl_run_source(source=_api_source(api))
    assert run.status == "succeeded", run.error
    assert (run.inserted, run.quarantined) == (200, 0)
    assert Record.objects.get(external_id="item-00130").title == "Item number 130"
    assert Record.objects.get(external_id="item-00131").title == "Item number 131"
    assert Record.objects.get(external_id="item-00200").title == "Item number 200"
    assert Record.objects.get(external_id="item-00200").extra["popularity"] == 200000

    events = [(e.kind, e.field, e.matched_to) for e in DriftEvent.objects.filter(run=run)]
    assert events == [
        ("new", "score", ""),  # batch 1
        ("renamed", "title", "item_title"),  # batch 4, reported once for batches 4 and 5
        ("new", "popularity", ""),
        ("new", "writer", ""),
        ("missing", "author", ""),  # batch 5: no item carries it any more
    ]
    assert run.drift_warnings == 5
