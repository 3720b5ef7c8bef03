"""RSS and Atom feeds (feedparser, on content we fetched ourselves).

A feed is one small document, read whole on every run, and its entries are processed in
one deterministic order: oldest first, ties by id, undated entries last. The cursor is a
checksum of those entries and the position reached. A run stopped part-way resumes at that
position while the entries are unchanged; once the entries change (a new item, whether it
is the newest, back-dated or shares a timestamp with others; an edited one), the whole feed
is read again and the items already stored unchanged are recognised by their content hash
and skipped. No publication time is ever used to skip entries: feeds are usually newest
first, back-date items and repeat timestamps, and a time cursor loses items in all three
cases. An unchanged feed that was read to its end is skipped at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import feedparser

from etl.connectors.base import Connector
from etl.http import FetchError
from etl.normalise import ItemRejected, canonical_json, parse_datetime

_UNDATED = datetime.max.replace(tzinfo=UTC)


def _published(payload: dict) -> datetime | None:
    try:
        return parse_datetime(payload["published"])
    except (ItemRejected, ValueError, OverflowError):
        return None  # normalising the item reports the unusable date


def ordered_entries(entries) -> list[dict]:
    """The entries as payloads, oldest first; equal times by id, then by content (so the
    order depends only on the entries, not on where the feed put them); undated last."""
    payloads = [
        {
            "id": entry.get("id") or entry.get("link"),
            "title": entry.get("title"),
            "link": entry.get("link"),
            "summary": entry.get("summary"),
            "author": entry.get("author"),
            "published": entry.get("published") or entry.get("updated"),
            "tags": [tag.get("term") for tag in entry.get("tags", []) if tag.get("term")],
        }
        for entry in entries
    ]
    keyed = []
    for payload in payloads:
        published = _published(payload)
        canonical = canonical_json(payload)
        keyed.append(
            ((published is None, published or _UNDATED, str(payload["id"] or ""), canonical), payload)
        )
    keyed.sort(key=lambda pair: pair[0])
    return [payload for _, payload in keyed]


def entries_checksum(payloads: list[dict]) -> str:
    """Of the entries only: a feed's own build date changes on every fetch, its items do not."""
    return hashlib.sha256(canonical_json({"entries": payloads}).encode()).hexdigest()


class RssConnector(Connector):
    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:
        config = self.config
        feed = feedparser.parse(self.read_bytes(path=config.path, url=config.url))
        if feed.bozo and not feed.entries:
            raise FetchError("The document is not a valid RSS or Atom feed.")
        payloads = ordered_entries(feed.entries)
        checksum = entries_checksum(payloads)
        same_entries = cursor.get("checksum") == checksum
        if same_entries and cursor.get("complete"):
            self.final_cursor = dict(cursor)
            return
        # A cursor of an older format, or of entries that have changed since: read it all.
        start = int(cursor.get("position") or 0) if same_entries else 0
        for position, payload in enumerate(payloads, start=1):
            if position <= start:
                continue
            yield payload, {"checksum": checksum, "position": position}
        self.final_cursor = {"checksum": checksum, "position": len(payloads), "complete": True}
