"""The one way to fetch an object an organisation owns by an id a caller sent (Zulip's
`access_*` habit). The rule it keeps: a missing id, a malformed one and another
organisation's are the same NotFound, worded per kind of object, so no answer tells "not
yours" from "does not exist"; and a malformed id in a list filter is a clean 422 naming the
parameter, never Django's or the database's own text.

Scoping is the queryset's: an organisation's schema holds only its own rows, and a
public-schema table (users) is filtered by the organisation before it gets here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet

from nexus.api.errors import NotFound, ValidationFailed, field_error

M = TypeVar("M", bound=Model)


class InvalidId(ValueError):
    """A value that cannot be a primary key of the model: no row can have it."""


def id_value(model: type[Model], raw: Any) -> Any:
    """`raw` converted to the model's primary key type (UUID, int, bounded string); InvalidId
    when it cannot be one. Sends no query."""
    if raw is None or isinstance(raw, bool):
        raise InvalidId(raw)
    if isinstance(raw, str):
        if not raw or "\x00" in raw:
            raise InvalidId(raw)
        try:
            raw.encode("utf-8")  # an unpaired surrogate cannot reach PostgreSQL
        except UnicodeEncodeError:
            raise InvalidId(raw) from None
    field = model._meta.pk
    try:
        value = field.to_python(raw)
        # The column's own bounds: an integer beyond bigint, a string over max_length.
        field.run_validators(value)
    except (ValidationError, TypeError, ValueError, OverflowError):
        raise InvalidId(raw) from None
    if value is None or value == "":
        raise InvalidId(raw)
    return value


def access_by_id(queryset: QuerySet[M], raw_id: Any, *, not_found: str) -> M:
    """The object of `queryset` with this primary key; NotFound(not_found) when the id is
    missing, malformed or another organisation's (all one answer)."""
    try:
        return queryset.get(pk=id_value(queryset.model, raw_id))
    except (InvalidId, queryset.model.DoesNotExist):
        raise NotFound(not_found) from None


def _bad_filter(param: str, message: str) -> ValidationFailed:
    return field_error(param, "Invalid id.", message=message)


def filter_id(model: type[Model], raw: str | None, *, param: str, what: str) -> Any:
    """A list filter `?<param>=<id>`: the id's value, None when absent or empty, 422 naming
    the parameter when it is not an id of `model` (`what` names the kind, "data source")."""
    if raw is None or raw == "":
        return None
    try:
        return id_value(model, raw)
    except InvalidId:
        raise _bad_filter(param, f"{param} must be a {what} id.") from None


def filter_ids(model: type[Model], raws: Iterable[str], *, param: str, what: str) -> list[Any]:
    """A comma separated id filter, already split: the values (blank items skipped), 422
    naming the parameter when any item is not an id of `model`."""
    values = []
    for raw in raws:
        if not raw.strip():
            continue
        try:
            values.append(id_value(model, raw))
        except InvalidId:
            raise _bad_filter(param, f"{param} must be {what} ids.") from None
    return values
