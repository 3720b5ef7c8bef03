"""Helpers for list endpoints: `sort`, multi-value filters (`status=a,b`), date ranges.
Every value is checked against an allow-list before it reaches the ORM; a bad one is a
422 naming the parameter and the accepted values."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from nexus.api.errors import ValidationFailed


def _invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"fields": {name: [message]}})


def apply_sort(
    queryset: QuerySet, request, *, allowed: set[str], default: str, param: str = "sort"
) -> QuerySet:
    """`?sort=-created_at,name`: fields from `allowed`, '-' for descending."""
    raw = request.query_params.get(param) or default
    ordering = []
    for item in (part.strip() for part in raw.split(",")):
        if item.lstrip("-") not in allowed:
            raise _invalid(param, f"Cannot sort by {item!r}; use one of {sorted(allowed)}.")
        ordering.append(item)
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
        raise _invalid(name, f"Unknown {name} {unknown}; use one of {sorted(allowed)}.")
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
            raise _invalid(name, f"{name} must be an ISO 8601 date or date-time.")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def date_range(queryset: QuerySet, request, *, field: str, start: str = "from", end: str = "to") -> QuerySet:
    lower = date_param(request, start)
    upper = date_param(request, end, end_of_day=True)
    if lower and upper and lower > upper:
        raise _invalid(start, f"'{start}' must not be after '{end}'.")
    if lower:
        queryset = queryset.filter(**{f"{field}__gte": lower})
    if upper:
        queryset = queryset.filter(**{f"{field}__lte": upper})
    return queryset
