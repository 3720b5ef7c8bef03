"""Helpers for list endpoints: `sort`, multi-value filters (`status=a,b`), date ranges.
Every value is checked against an allow-list before it reaches the ORM; a bad one is a
422 naming the parameter and the accepted values. Each helper has a `*_parameter` twin that
documents exactly the rule it enforces (the same regular expression), so the OpenAPI
document and the server cannot drift apart."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter

from nexus.api.errors import field_error

UUID_LIST_PATTERN = (
    "^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    "(?:,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})*)?$"
)


# An empty query parameter (`?to=`) means the parameter is absent.
_EMPTY = {"type": "string", "maxLength": 0}


def _alternatives(allowed: set[str]) -> str:
    return "|".join(re.escape(value) for value in sorted(allowed))


# Spaces around items have always been accepted ("pending, running"); written out rather
# than \s, whose meaning differs between Python and JSON Schema.
_WS = "[ \t\n\r\f\v]*"


def sort_pattern(allowed: set[str]) -> str:
    item = f"{_WS}-?(?:{_alternatives(allowed)}){_WS}"
    return f"^(?:{item}(?:,{item})*)?$"


def list_pattern(allowed: set[str]) -> str:
    """Empty items are skipped, as they always were ("pending,,running,"). A blank item has
    one way to match (the second branch), so a value that fails is refused in linear time;
    `ws* value? ws*` could split each blank item's spaces k+1 ways and backtrack through
    every combination of them."""
    item = f"(?:{_WS}(?:{_alternatives(allowed)}){_WS}|{_WS})"
    return f"^{item}(?:,{item})*$"


def sort_parameter(*, allowed: set[str], default: str, param: str = "sort") -> OpenApiParameter:
    return OpenApiParameter(
        param,
        {"type": "string", "pattern": sort_pattern(allowed)},
        description=f"Comma separated, '-' for descending; one of {sorted(allowed)}. Default {default}.",
    )


def multi_value_parameter(name: str, *, allowed: set[str], description: str = "") -> OpenApiParameter:
    return OpenApiParameter(
        name,
        {"type": "string", "pattern": list_pattern(allowed)},
        description=(description + " " if description else "") + f"Comma separated, of {sorted(allowed)}.",
    )


def date_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}, _EMPTY]},
        description=description + " (empty: no bound)",
    )


def uuid_parameter(name: str, description: str, *, required: bool = False) -> OpenApiParameter:
    value = {"type": "string", "format": "uuid"}
    return OpenApiParameter(
        name, value if required else {"anyOf": [value, _EMPTY]}, description=description, required=required
    )


def apply_sort(
    queryset: QuerySet, request, *, allowed: set[str], default: str, param: str = "sort"
) -> QuerySet:
    """`?sort=-created_at,name`: fields from `allowed`, '-' for descending."""
    raw = request.query_params.get(param) or default
    ordering = []
    for item in (part.strip() for part in raw.split(",")):
        if item.lstrip("-") not in allowed:
            raise field_error(param, f"Cannot sort by {item!r}; use one of {sorted(allowed)}.")
        ordering.append(item)
    if not re.fullmatch(sort_pattern(allowed), raw):  # whitespace other than the published kinds
        raise field_error(param, f"{param} must be comma separated fields of {sorted(allowed)}.")
    # A unique tiebreaker keeps pages stable when many rows share a sort value.
    return queryset.order_by(*ordering, "pk")


def multi_value(request, name: str, *, allowed: set[str]) -> list[str]:
    """`?status=pending,running` -> ["pending", "running"]; [] when absent."""
    raw = request.query_params.get(name)
    if not raw:
        return []
    values = [value.strip() for value in raw.split(",") if value.strip()]
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise field_error(name, f"Unknown {name} {unknown}; use one of {sorted(allowed)}.")
    if not re.fullmatch(list_pattern(allowed), raw):  # whitespace other than the published kinds
        raise field_error(name, f"{name} must be comma separated values of {sorted(allowed)}.")
    return values


def date_param(request, name: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date (2026-01-31) or date-time (2026-01-31T10:00:00Z); dates without a time
    mean the start of that day, or its end for the upper bound of a range."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    # A bare date is a whole day: the start of it, or its end for the upper bound.
    try:
        day = parse_date(raw)
    except ValueError:
        day = None
    if day is not None:
        parsed = datetime.combine(day, time.max if end_of_day else time.min)
    else:
        try:
            parsed = parse_datetime(raw)
        except ValueError:
            parsed = None
        if parsed is None:
            raise field_error(name, f"{name} must be an ISO 8601 date or date-time.")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    try:
        # PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows; UTC it is.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise field_error(name, f"{name} is out of range.") from None


def date_range(queryset: QuerySet, request, *, field: str, start: str = "from", end: str = "to") -> QuerySet:
    lower = date_param(request, start)
    upper = date_param(request, end, end_of_day=True)
    if lower and upper and lower > upper:
        raise field_error(start, f"'{start}' must not be after '{end}'.")
    if lower:
        queryset = queryset.filter(**{f"{field}__gte": lower})
    if upper:
        queryset = queryset.filter(**{f"{field}__lte": upper})
    return queryset
