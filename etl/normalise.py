"""Raw items to unified records: field mapping applied, values cleaned, validated by Pydantic.

A value that cannot be cleaned raises ItemRejected with a reason a person can act on; the
runner quarantines the item and goes on.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

from dateutil import parser as date_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nexus.net import web_url

UNIFIED_FIELDS = ("external_id", "title", "body", "url", "author", "published_at", "tags")

_DATE_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%b %d, %Y %H:%M",
    "%b %d, %Y",
    "%d %b %Y %H:%M",
    "%d %b %Y",
    "%B %d, %Y",
)
_date_formats = list(_DATE_FORMATS)
_THOUSANDS_NUMBER = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_PLAIN_NUMBER = re.compile(r"^[+-]?(0|[1-9]\d*)(\.\d+)?$")


class ItemRejected(ValueError):
    """The item cannot become a record; the message is the quarantine reason."""


def canonical_json(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(payload: dict, canonical: str | None = None) -> str:
    """SHA-1 of the item's canonical JSON: equal hashes mean an unchanged item (the
    payload includes its id, so the hash alone identifies it within a source)."""
    canonical = canonical if canonical is not None else canonical_json(payload)
    return hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()


def clean_text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    value = value.replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL
    return value or None


def without_nul(value: Any) -> Any:
    """The item with NUL characters removed from every string (keys included):
    PostgreSQL's text and jsonb refuse them, and one would fail the whole batch."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def clean_scalar(value: Any) -> Any:
    """For `extra`: trimmed text, blank as null, numbers written with thousands
    separators as numbers."""
    if isinstance(value, str):
        text = value.replace("\x00", "").strip()
        if not text:
            return None
        if _THOUSANDS_NUMBER.match(text) or _PLAIN_NUMBER.match(text):
            number = float(text.replace(",", ""))
            return int(number) if number.is_integer() and "." not in text else number
        return text
    return value


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601, dd/mm/yyyy (day first), yyyy/mm/dd, "Jan 5, 2026 14:30", RFC 2822 and unix
    seconds (or milliseconds); converted to UTC, naive times taken as UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    else:
        text = str(value).strip()
        if not text:
            return None
        parsed = _parse_date_text(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@lru_cache(maxsize=8192)
def _parse_date_text(text: str) -> datetime:
    """Cached: a date column repeats the same values (days) many times over."""
    if text.isdigit() and len(text) in (10, 13):
        number = int(text)
        return datetime.fromtimestamp(number / 1000 if len(text) == 13 else number, tz=UTC)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    # A column usually holds one format: the one that matched last is tried first.
    for fmt in _date_formats:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt is not _date_formats[0]:
            _date_formats.remove(fmt)
            _date_formats.insert(0, fmt)
        return parsed
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return date_parser.parse(text, dayfirst=True)
    except (ValueError, OverflowError) as exc:
        raise ItemRejected(f"unrecognised date {text!r}") from exc


def parse_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = re.split(r"[;,|]", value)
    elif isinstance(value, (list, tuple)):
        parts = [p.get("term", "") if isinstance(p, dict) else p for p in value]
    else:
        parts = [value]
    seen: dict[str, None] = {}
    for part in parts:
        tag = clean_text(part)
        if tag:
            seen.setdefault(tag[:100], None)
    return list(seen)


class UnifiedRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=255)
    title: str | None = None
    body: str | None = None
    url: str | None = None
    author: str | None = Field(default=None, max_length=255)
    published_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("external_id", "title", "body", "url", "author", mode="before")
    @classmethod
    def _text(cls, value):
        return clean_text(value)

    @field_validator("url")
    @classmethod
    def _web_url(cls, value):
        # A source's `javascript:` or `data:` link would run in our pages when clicked; the
        # raw table still holds what the source sent.
        return web_url(value)

    @field_validator("published_at", mode="before")
    @classmethod
    def _date(cls, value):
        return parse_datetime(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value):
        return parse_tags(value)


def normalise(payload: dict, mapping: dict[str, str], required: list[str]) -> UnifiedRecord:
    """Map and clean one item. `mapping` is unified field -> incoming field name."""
    values: dict[str, Any] = {}
    used = set()
    for field in UNIFIED_FIELDS:
        source_field = mapping.get(field)
        if source_field is not None:
            values[field] = payload.get(source_field)
            used.add(source_field)
    for field in required:
        if clean_text(values.get(field)) is None if field != "tags" else not values.get(field):
            raise ItemRejected(f"missing required field {field!r} (mapped from {mapping.get(field)!r})")
    values["extra"] = {key: clean_scalar(value) for key, value in payload.items() if key not in used}
    try:
        return UnifiedRecord(**values)
    except ItemRejected:
        raise
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ItemRejected(f"{where}: {first['msg']}") from None
