"""Wraps every API payload in the envelope: {"data": ..., "meta": {...}} for success,
{"error": ..., "meta": {...}} for errors. meta always carries the request id; list
endpoints add page, limit and total (set by nexus.api.pagination)."""

from __future__ import annotations

from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from nexus.api.errors import field_error


def request_meta(request) -> dict:
    django_request = getattr(request, "_request", request)
    return {"request_id": getattr(django_request, "request_id", None)}


class EnvelopeJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        renderer_context = renderer_context or {}
        response = renderer_context.get("response")
        request = renderer_context.get("request")
        if response is None:
            return super().render(data, accepted_media_type, renderer_context)
        if response.status_code == 204:
            return b""
        meta = request_meta(request)
        meta.update(getattr(response, "envelope_meta", {}))
        if getattr(response, "is_error_envelope", False):
            body = {"error": data["error"], "meta": meta}
        else:
            body = {"data": data, "meta": meta}
        return super().render(body, accepted_media_type, renderer_context)


class CsvRenderer(BaseRenderer):
    """Lets a client ask for text/csv. The CSV itself is streamed by the view and errors are
    always the JSON envelope, so this renderer never renders anything."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):  # pragma: no cover
        raise NotImplementedError


class CsvDownloadMixin:
    """For a view that streams CSV: accepts text/csv, and answers every error in the JSON
    envelope whatever the client asked for."""

    renderer_classes = [EnvelopeJSONRenderer, CsvRenderer]

    def initial(self, request, *args, **kwargs):
        # `?format=` picks the renderer (csv or json, as published); anything else, the empty
        # value included, is refused rather than ignored.
        chosen = request.query_params.get("format")
        if chosen is not None and chosen not in ("csv", "json"):
            raise field_error("format", "format must be csv or json.")
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response):  # an error: the envelope, whatever was asked for
            request.accepted_renderer = EnvelopeJSONRenderer()
            request.accepted_media_type = EnvelopeJSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
