"""RSS resume and incremental runs: whatever order a feed lists its items in, and whatever
dates they carry, a stopped run resumes with no gaps and no duplicates, and later runs
import every item they have not stored yet."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import feedparser
import pytest

from etl.connectors.rss import ordered_entries
from etl.models import Checkpoint, RawRssItem, Record
from etl.services import etl_run_source, etl_source_create
from etl.tests.conftest import RSS_MAPPING

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def _item(number: int, published: datetime | None) -> dict:
    return {"guid": f"https://example.com/p/{number}", "title": f"Post {number}", "published": published}


def _write_feed(path, items: list[dict]) -> None:
    entries = []
    for item in items:
        date = f"<pubDate>{format_datetime(item['published'])}</pubDate>" if item["published"] else ""
        entries.append(
            f"<item><guid>{item['guid']}</guid><title>{item['title']}</title>"
            f"<link>{item['guid']}</link><description>About {item['title']}.</description>{date}</item>"
        )
    # The channel's build date changes on every write, as a live feed's does.
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Feed</title>'
        f"<link>https://example.com/</link><lastBuildDate>{format_datetime(datetime.now(UTC))}"
        f"</lastBuildDate>{''.join(entries)}</channel></rss>"
    )


def _feed_source(path):
    return etl_source_create(name="Feed", kind="rss", config={"path": path.name}, field_mapping=RSS_MAPPING)


def _ids(source) -> set[str]:
    return set(Record.objects.filter(source=source).values_list("external_id", flat=True))


def _guids(numbers) -> set[str]:
    return {f"https://example.com/p/{n}" for n in numbers}


def test_a_newest_first_feed_resumes_where_it_stopped(org_a, files):
    path = files / "news.xml"
    _write_feed(path, [_item(n, BASE + timedelta(hours=n)) for n in range(10, 0, -1)])  # newest first
    source = _feed_source(path)

    failed = etl_run_source(source=source, fail_after=3)
    assert failed.status == "failed"
    assert failed.fetched == 3
    assert _ids(source) == _guids([1, 2, 3])  # oldest first, whatever the feed's order

    resumed = etl_run_source(source=source)
    assert resumed.status == "succeeded"
    assert resumed.trigger == "resume"
    assert (resumed.fetched, resumed.inserted, resumed.skipped) == (7, 7, 0)
    assert _ids(source) == _guids(range(1, 11))
    assert RawRssItem.objects.filter(source=source).count() == 10

    again = etl_run_source(source=source)
    assert (again.status, again.fetched, again.inserted) == ("succeeded", 0, 0)


def test_items_sharing_a_timestamp_are_never_skipped(org_a, files):
    path = files / "same-time.xml"
    items = [_item(n, BASE) for n in range(1, 7)]
    _write_feed(path, items)
    source = _feed_source(path)

    assert etl_run_source(source=source, fail_after=2).status == "failed"
    resumed = etl_run_source(source=source)
    assert (resumed.status, resumed.inserted) == ("succeeded", 4)
    assert _ids(source) == _guids(range(1, 7))

    # A later item published at the very time already seen.
    _write_feed(path, [_item(7, BASE), *items])
    later = etl_run_source(source=source)
    assert (later.status, later.inserted, later.skipped) == ("succeeded", 1, 6)
    assert _ids(source) == _guids(range(1, 8))


def test_a_back_dated_item_on_a_later_run_is_imported(org_a, files):
    path = files / "backdated.xml"
    items = [_item(n, BASE + timedelta(days=n)) for n in range(5, 0, -1)]
    _write_feed(path, items)
    source = _feed_source(path)
    assert etl_run_source(source=source).inserted == 5

    _write_feed(path, [*items, _item(99, BASE - timedelta(days=30))])  # older than all seen
    later = etl_run_source(source=source)
    assert (later.status, later.fetched, later.inserted, later.skipped) == ("succeeded", 6, 1, 5)
    assert _ids(source) == _guids([1, 2, 3, 4, 5, 99])
    assert RawRssItem.objects.filter(source=source).count() == 6


def test_a_feed_that_changed_while_stopped_is_read_again_without_duplicates(org_a, files):
    path = files / "moving.xml"
    items = [_item(n, BASE + timedelta(hours=n)) for n in range(10, 0, -1)]
    _write_feed(path, items)
    source = _feed_source(path)
    assert etl_run_source(source=source, fail_after=3).status == "failed"

    _write_feed(path, [_item(11, BASE + timedelta(hours=11)), *items])
    resumed = etl_run_source(source=source)
    assert resumed.status == "succeeded"
    assert (resumed.fetched, resumed.inserted, resumed.skipped) == (11, 8, 3)
    assert _ids(source) == _guids(range(1, 12))
    assert RawRssItem.objects.filter(source=source).count() == 11
    assert Checkpoint.objects.get(source=source).cursor["complete"]


def test_an_edited_item_is_updated(org_a, files):
    path = files / "edited.xml"
    items = [_item(n, BASE + timedelta(hours=n)) for n in (2, 1)]
    _write_feed(path, items)
    source = _feed_source(path)
    etl_run_source(source=source)

    items[1]["title"] = "Post 1 (corrected)"
    _write_feed(path, items)
    later = etl_run_source(source=source)
    assert (later.inserted, later.updated, later.skipped) == (0, 1, 1)
    assert Record.objects.get(external_id="https://example.com/p/1").title == "Post 1 (corrected)"


def test_entries_are_ordered_oldest_first_with_undated_last(tmp_path):
    path = tmp_path / "order.xml"
    _write_feed(path, [_item(3, None), _item(2, BASE + timedelta(hours=1)), _item(1, BASE), _item(0, BASE)])
    ordered = ordered_entries(feedparser.parse(path.read_bytes()).entries)
    assert [p["title"] for p in ordered] == ["Post 0", "Post 1", "Post 2", "Post 3"]
