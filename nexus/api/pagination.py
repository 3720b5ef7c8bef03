"""Page/limit pagination: `?page=1&limit=20`. The page's rows go in `data`; page, limit
and total go in `meta`. A page past the end is an empty list, not an error; a page past
MAX_PAGE is a 422 (its offset would not fit PostgreSQL's bigint)."""

from __future__ import annotations

from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from nexus.api.errors import field_error

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_PAGE = 1_000_000


def _positive_int(request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1 or (maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum else ""
        raise field_error(
            name, f"Invalid value: {raw!r}.", message=f"'{name}' must be a whole number of at least 1{bound}."
        )
    return value


class PagePagination(BasePagination):
    def paginate_queryset(self, queryset, request, view=None):
        self.page = _positive_int(request, "page", 1, MAX_PAGE)
        self.limit = _positive_int(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        self.total = queryset.count()
        start = (self.page - 1) * self.limit
        return list(queryset[start : start + self.limit])

    def get_paginated_response(self, data):
        response = Response(data)
        response.envelope_meta = {"page": self.page, "limit": self.limit, "total": self.total}
        return response

    def get_paginated_response_schema(self, schema):
        return schema

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "page",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            },
        ]


def paginated(request, rows, serializer) -> Response:
    """One page of `rows` (a queryset, `?page=&limit=`) serialized with `serializer` (a
    serializer class, called with many=True), with page, limit and total in meta: how
    every list endpoint answers."""
    paginator = PagePagination()
    page = paginator.paginate_queryset(rows, request)
    return paginator.get_paginated_response(serializer(page, many=True).data)
