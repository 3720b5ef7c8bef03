"""Cleaning and validation of single items, and schema drift matching."""

from datetime import UTC, datetime

import pytest

from etl.drift import RunDrift, plan_mapping
from etl.normalise import ItemRejected, clean_scalar, normalise, parse_datetime, parse_tags

MAPPING = {"external_id": "id", "title": "title", "published_at": "date", "tags": "tags", "author": "by"}


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("2026-01-05", datetime(2026, 1, 5, tzinfo=UTC)),
        ("2026-01-08T09:15:00+02:00", datetime(2026, 1, 8, 7, 15, tzinfo=UTC)),
        ("2026-01-08T09:15:00Z", datetime(2026, 1, 8, 9, 15, tzinfo=UTC)),
        ("05/01/2026", datetime(2026, 1, 5, tzinfo=UTC)),
        ("2026/01/10", datetime(2026, 1, 10, tzinfo=UTC)),
        ("13.01.2026", datetime(2026, 1, 13, tzinfo=UTC)),
        ("Jan 7, 2026 14:30", datetime(2026, 1, 7, 14, 30, tzinfo=UTC)),
        ("Tue, 06 Jan 2026 22:30:00 +0100", datetime(2026, 1, 6, 21, 30, tzinfo=UTC)),
        ("1767950000", datetime(2026, 1, 9, 9, 13, 20, tzinfo=UTC)),
        (1767950000000, datetime(2026, 1, 9, 9, 13, 20, tzinfo=UTC)),
        ("  ", None),
        (None, None),
    ],
)
def test_dates_in_many_formats_become_utc(raw, expected):
    assert parse_datetime(raw) == expected


def test_unparseable_date_is_rejected_with_the_value():
    with pytest.raises(ItemRejected, match="unrecognised date 'not a date'"):
        parse_datetime("not a date")


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("1,234", 1234),
        ("12,500.5", 12500.5),
        ("1,000,000", 1000000),
        ("42", 42),
        ("3.5", 3.5),
        ("007", "007"),
        ("  hello ", "hello"),
        ("", None),
        ("   ", None),
        (5, 5),
    ],
)
def test_extra_values_are_cleaned(raw, expected):
    assert clean_scalar(raw) == expected


def test_tags_from_text_or_lists():
    assert parse_tags("product, launch") == ["product", "launch"]
    assert parse_tags("finance;quarterly;finance") == ["finance", "quarterly"]
    assert parse_tags([{"term": "a"}, " b ", ""]) == ["a", "b"]
    assert parse_tags(None) == []


def test_normalise_maps_trims_and_keeps_the_rest_in_extra():
    record = normalise(
        {
            "id": " 17 ",
            "title": "  Hello  ",
            "date": "05/01/2026",
            "tags": "x, y",
            "by": " ",
            "views": "1,234",
        },
        MAPPING,
        ["external_id", "title"],
    )
    assert record.external_id == "17"
    assert record.title == "Hello"
    assert record.author is None
    assert record.published_at == datetime(2026, 1, 5, tzinfo=UTC)
    assert record.tags == ["x", "y"]
    assert record.extra == {"views": 1234}


@pytest.mark.parametrize(
    "url,kept",
    [
        ("https://example.com/a?b=1", True),
        ("HTTP://example.com/", True),
        ("javascript:alert(document.cookie)", False),
        (" JavaScript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("//example.com/no-scheme", False),
        ("https:///no-host", False),
        ("mailto:someone@example.com", False),
    ],
)
def test_only_web_links_are_kept_as_a_records_url(url, kept):
    record = normalise({"id": "1", "title": "t", "link": url}, {**MAPPING, "url": "link"}, ["external_id"])
    assert record.url == (url.strip() if kept else None)


@pytest.mark.parametrize(
    "payload,reason",
    [
        ({"id": "1", "title": "   "}, "missing required field 'title'"),
        ({"id": "", "title": "t"}, "missing required field 'external_id'"),
        ({"id": "1", "title": "t", "date": "31/31/2026"}, "unrecognised date"),
        ({"id": "x" * 300, "title": "t"}, "external_id"),
    ],
)
def test_invalid_items_are_rejected_with_a_reason(payload, reason):
    with pytest.raises(ItemRejected, match=reason):
        normalise(payload, MAPPING, ["external_id", "title"])


def test_drift_matches_a_renamed_field_and_reports_it():
    plan = plan_mapping(
        mapping={"external_id": "id", "title": "title", "author": "author"},
        incoming={"id", "titel", "author"},
        required=["external_id", "title"],
        threshold=80,
    )
    assert plan.effective["title"] == "titel"
    (event,) = plan.events
    assert event.kind == "renamed"
    assert event.field == "title"
    assert event.matched_to == "titel"
    assert event.confidence >= 80


def test_drift_below_the_threshold_is_missing_and_required_is_flagged():
    plan = plan_mapping(
        mapping={"external_id": "id", "title": "title", "author": "author"},
        incoming={"id", "headline", "writer"},
        required=["external_id", "title"],
        threshold=85,
    )
    kinds = {(e.kind, e.field) for e in plan.events}
    assert ("missing_required", "title") in kinds
    assert ("missing", "author") in kinds
    assert {("new", "headline"), ("new", "writer")} <= kinds


def test_drift_normalises_names_and_reports_new_fields_once():
    plan = plan_mapping(
        mapping={"external_id": "Article ID"},
        incoming={" article_id ", "views"},
        required=["external_id"],
        threshold=85,
    )
    assert plan.effective == {"external_id": " article_id "}
    assert [(e.kind, e.field) for e in plan.events] == [("new", "views")]
    again = plan_mapping(
        mapping={"external_id": "Article ID"},
        incoming={" article_id ", "views"},
        required=["external_id"],
        threshold=85,
        known={"views"},
    )
    assert again.events == []


def _batch(drift: RunDrift, *shapes: set[str]) -> list[tuple[str, str, str]]:
    keys = [frozenset(shape) for shape in shapes]
    for key in keys:
        drift.effective(key)
    return [(e.kind, e.field, e.matched_to) for e in drift.batch_events(keys)]


def test_run_drift_checks_every_batch_and_reports_each_drift_once():
    drift = RunDrift(
        mapping={"external_id": "id", "title": "title", "author": "author"},
        required=["external_id", "title"],
        threshold=85,
        known={"id", "title", "author"},
    )
    # Some items leave the author out: not missing while others carry it.
    assert _batch(drift, {"id", "title", "author"}, {"id", "title"}) == []
    # A later batch renames title for some items: those items read it, reported once.
    assert _batch(drift, {"id", "title", "author"}, {"id", "item_title", "author"}) == [
        ("renamed", "title", "item_title")
    ]
    assert drift.effective(frozenset({"id", "item_title", "author"}))["title"] == "item_title"
    assert drift.effective(frozenset({"id", "title", "author"}))["title"] == "title"
    assert _batch(drift, {"id", "item_title", "author"}) == []
    # No item of a batch has the author any more, and a new field arrives: once each.
    assert _batch(drift, {"id", "item_title", "views"}) == [("missing", "author", ""), ("new", "views", "")]
    assert _batch(drift, {"id", "item_title", "views"}, {"id", "title", "views"}) == []
