"""RSS and Atom feeds (feedparser, on content we fetched ourselves). The cursor is the
newest publication time seen; older entries are not fetched again."""

from __future__ import annotations

from collections.abc import Iterator

import feedparser

from etl.connectors.base import Connector
from etl.http import FetchError
from etl.normalise import ItemRejected, parse_datetime


class RssConnector(Connector):
    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:
        config = self.source.config
        feed = feedparser.parse(self.read_bytes(path=config.get("path"), url=config.get("url")))
        if feed.bozo and not feed.entries:
            raise FetchError("The document is not a valid RSS or Atom feed.")
        last = cursor.get("last_published")
        last_time = parse_datetime(last) if last else None
        newest = last
        for entry in feed.entries:
            payload = {
                "id": entry.get("id") or entry.get("link"),
                "title": entry.get("title"),
                "link": entry.get("link"),
                "summary": entry.get("summary"),
                "author": entry.get("author"),
                "published": entry.get("published") or entry.get("updated"),
                "tags": [tag.get("term") for tag in entry.get("tags", []) if tag.get("term")],
            }
            try:
                published = parse_datetime(payload["published"])
            except ItemRejected:
                published = None
            if last_time and published and published <= last_time:
                continue
            if published and (newest is None or published > parse_datetime(newest)):
                newest = published.isoformat()
            yield payload, {"last_published": newest}
        self.final_cursor = {"last_published": newest}
