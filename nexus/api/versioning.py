"""API versions side by side: one view, one service, and per version the serializer that
shapes the response. A version's serializer only ever adds to the previous one's fields
(see docs/api-versioning.md for what counts as breaking).

`versioned(Base, request)` picks the class for the request's version; the OpenAPI
generator uses the same registry, so each version's document shows its own shapes.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from email.utils import format_datetime

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

_OVERRIDES: dict[type, dict[str, type]] = {}


def register_version(base: type, version: str):
    """Class decorator: `@register_version(JobOutput, "v2")` on JobOutputV2."""

    def decorate(cls: type) -> type:
        _OVERRIDES.setdefault(base, {})[version] = cls
        return cls

    return decorate


def versioned_class(base: type, version: str | None) -> type:
    return _OVERRIDES.get(base, {}).get(version or "", base)


def versioned(base: type, request) -> type:
    return versioned_class(base, getattr(request, "version", None))


class VersionedAutoSchema(AutoSchema):
    """Documents each version's response serializers (the registry above)."""

    def _swap(self, serializer):
        version = getattr(self.view.request, "version", None)
        if isinstance(serializer, serializers.ListSerializer):
            child = serializer.child
            return versioned_class(type(child), version)(many=True)
        if isinstance(serializer, serializers.BaseSerializer):
            return versioned_class(type(serializer), version)()
        if isinstance(serializer, type):
            return versioned_class(serializer, version)
        return serializer

    def _map_basic_serializer(self, serializer, direction):
        # Rules across fields (exactly one of text / record_id) cannot come from single
        # fields: a request serializer states them in `openapi_request_rules`.
        schema = super()._map_basic_serializer(serializer, direction)
        rules = getattr(serializer, "openapi_request_rules", None)
        if rules and direction == "request":
            schema.update(copy.deepcopy(rules))
        return schema

    # Hooked below extend_schema's override of get_response_serializers, which would
    # otherwise return the declared (base) serializers unchanged.
    def _get_response_for_code(self, serializer, status_code, *args, **kwargs):
        return super()._get_response_for_code(self._swap(serializer), status_code, *args, **kwargs)


def _http_date(value: str) -> str:
    return format_datetime(datetime.fromisoformat(value).replace(tzinfo=UTC), usegmt=True)


def _unix(value: str) -> int:
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp())


class ApiVersionLifecycleMiddleware:
    """Adds Deprecation (RFC 9745), Sunset (RFC 8594) and a deprecation Link to every
    response of a version listed in API_VERSION_LIFECYCLE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        parts = request.path.split("/")
        if len(parts) > 2 and parts[1] == "api":
            lifecycle = settings.API_VERSION_LIFECYCLE.get(parts[2])
            if lifecycle:
                if lifecycle.get("deprecated"):
                    response["Deprecation"] = f"@{_unix(lifecycle['deprecated'])}"
                if lifecycle.get("sunset"):
                    response["Sunset"] = _http_date(lifecycle["sunset"])
                if lifecycle.get("link"):
                    response["Link"] = f'<{lifecycle["link"]}>; rel="deprecation"'
        return response
