"""An audit of the organisation's own ETL records: the records a selection names, read
through etl.selectors, as the items an audit evaluates (text: the title, a blank line, the
body, as an AI job reads a record; external id: the record's id; url: its url).

The rule it keeps: the selection names only the organisation's records (a source it does
not have is "no such data source"), and a selection over the limit is refused before an
item is written. The items are written with COPY, and a connection in COPY can send no
other query: the records are read first, in chunks, into a spooled file (on disk past a few
MiB, like an upload), and the COPY reads them back from it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from django.conf import settings
from django.db.models import QuerySet

from audits.inputs import InputItem, TooManyItems
from etl import selectors as etl_selectors
from nexus.api.errors import field_error

MAX_SEARCH_CHARS = 200
MAX_URL_CHARS = 2048
_READ_CHUNK = 2000
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class RecordSelection:
    source_id: object = None  # a data source id, or every source
    published_from: date | None = None  # inclusive, UTC days
    published_to: date | None = None
    search: str = ""


class RecordItems(Iterator[InputItem]):
    """The selected records as items. Built by reading them all, a chunk at a time, into a
    spooled file; iterating reads them back one at a time. `skipped` counts records with
    neither title nor body (nothing to evaluate)."""

    input_kind = "records"

    def __init__(self, records: QuerySet, *, max_item_chars: int):
        self.skipped = 0
        self.count = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        for record in records.iterator(chunk_size=_READ_CHUNK):
            text = etl_selectors.record_text_of(record)
            if not text:
                self.skipped += 1
                continue
            url = record.url or ""
            if len(url) > MAX_URL_CHARS or not url.lower().startswith(("http://", "https://")):
                url = ""
            published = record.published_at.isoformat() if record.published_at else None
            line = [str(record.pk), text[:max_item_chars], url, published, len(text) > max_item_chars]
            self._spool.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            self.count += 1
        self._spool.seek(0)
        self._items = self._read()

    def __iter__(self) -> RecordItems:
        return self

    def __next__(self) -> InputItem:
        return next(self._items)

    def _read(self) -> Iterator[InputItem]:
        with self._spool:
            for line in self._spool:
                external_id, text, url, published, truncated = json.loads(line)
                yield InputItem(
                    external_id=external_id,
                    text=text,
                    url=url,
                    created_at=datetime.fromisoformat(published) if published else None,
                    truncated=truncated,
                )


def _bound(day: date | None, moment: time) -> datetime | None:
    return datetime.combine(day, moment, tzinfo=UTC) if day is not None else None


def record_items(selection: RecordSelection) -> tuple[str, RecordItems]:
    """(the input's name, its items) for a selection of the organisation's records.
    NotFound for a source it does not have; 422 (field `records`) when nothing matches;
    TooManyItems (with the count) when more than AUDIT_MAX_ITEMS do."""
    if (
        selection.published_from
        and selection.published_to
        and selection.published_from > selection.published_to
    ):
        raise field_error("records", "'from' must not be after 'to'.")
    if len(selection.search) > MAX_SEARCH_CHARS:
        raise field_error("records", f"search is limited to {MAX_SEARCH_CHARS} characters.")
    source = None
    if selection.source_id is not None:
        source = etl_selectors.source_get(source_id=selection.source_id)
    records = etl_selectors.record_list(
        sources=[str(source.pk)] if source is not None else None,
        search=selection.search.strip(),
        published_from=_bound(selection.published_from, time.min),
        published_to=_bound(selection.published_to, time.max),
    )
    count = records.count()
    if count == 0:
        raise field_error("records", "No record matches this selection.")
    if count > settings.AUDIT_MAX_ITEMS:
        raise TooManyItems(count=count, limit=settings.AUDIT_MAX_ITEMS)
    name = f"Records of {source.name}" if source is not None else "Records of every data source"
    items = RecordItems(records, max_item_chars=settings.AUDIT_MAX_ITEM_CHARS)
    if items.count == 0:
        raise field_error("records", "The matching records have neither title nor body to evaluate.")
    return name, items
