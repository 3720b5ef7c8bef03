"""Request id and the one log line per request; the guard that refuses malformed /api/
requests before any view sees them.

Every response carries X-Request-ID (the client's, when it sent a well-formed one), and
every log line written while handling the request carries it too, with org_id and user_id
once the caller is known.
"""

from __future__ import annotations

import functools
import re
import sys
import time
import uuid

import structlog
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.signals import got_request_exception
from django.urls import Resolver404, resolve

from nexus.api.exceptions import (
    is_dependency_outage,
    json_error_response,
    outage_json_response,
)
from nexus.logging import cloud_trace_fields
from nexus.views import outage_page

log = structlog.get_logger("nexus.request")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _request_id(request) -> str:
    supplied = request.headers.get("X-Request-ID", "")
    if _CLIENT_REQUEST_ID.match(supplied):
        return supplied
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        request.request_id = _request_id(request)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request.request_id,
            **cloud_trace_fields(
                project=settings.GOOGLE_CLOUD_PROJECT,
                cloud_trace=request.headers.get("X-Cloud-Trace-Context", ""),
                traceparent=request.headers.get("traceparent", ""),
            ),
        )
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id

        match = getattr(request, "resolver_match", None)
        tenant = getattr(request, "tenant", None)
        caller = getattr(request, "caller", None)
        log.info(
            "request",
            request_id=request.request_id,
            org_id=str(tenant.id) if tenant is not None else None,
            user_id=str(caller.pk) if caller is not None else None,
            route=match.route if match else None,
            method=request.method,
            path=request.path,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        structlog.contextvars.clear_contextvars()
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # The URL pattern, not the path: ids in a path would make every line its own route.
        match = getattr(request, "resolver_match", None)
        if match is not None:
            structlog.contextvars.bind_contextvars(route=match.route)


def _view_attribute(request, name: str):
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    return getattr(view_class, name, None) or getattr(match.func, name, None)


def _view_body_limit(request) -> int | None:
    limit = _view_attribute(request, "max_body_bytes")
    if callable(limit):  # read at request time, so it follows a setting
        limit = limit()
    return int(limit) if limit else None


def body_limit_for(request) -> int:
    """The view's `max_body_bytes` (a number, or a function returning one), else the first
    API_BODY_LIMITS pattern matching the path, else API_MAX_BODY_BYTES."""
    limit = _view_body_limit(request)
    if limit is not None:
        return limit
    for pattern, path_limit in settings.API_BODY_LIMITS.items():
        if re.search(pattern, request.path_info):
            return int(path_limit)
    return settings.API_MAX_BODY_BYTES


def drain_after(response, request, declared: int) -> None:
    """Drain the refused request's body once `response` has been sent (see below)."""
    response._resource_closers.append(functools.partial(drain_request_body, request, declared))


def drain_request_body(request, declared: int) -> None:
    """Read and discard a refused body (up to API_BODY_DRAIN_BYTES) so that a client still
    sending is not reset before it has read our 413. Runs after the answer has been sent
    (the server closes the response, then this), so a client that lies about the length
    still gets the answer at once."""
    remaining = min(declared, settings.API_BODY_DRAIN_BYTES)
    stream = request.environ.get("wsgi.input")
    try:
        while remaining > 0 and stream is not None:
            chunk = stream.read(min(remaining, 64 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
    except (OSError, ValueError, AssertionError):
        # The client went away, or a test payload is shorter than it claimed: nothing to drain.
        pass


class ApiInputGuardMiddleware:
    """Refuses, before any view, session or CSRF code touches it, an /api/ request that no
    endpoint could handle safely: a body over the endpoint's limit (413), a body that does
    not match its Content-Length (400), NUL in the path (404) or in a query parameter (422).
    See docs/specs/input-validation.md."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        refusal = self._refusal(request)
        return refusal if refusal is not None else self.get_response(request)

    def _refusal(self, request):
        if "\x00" in request.path_info:
            return json_error_response(request, 404, "NOT_FOUND", "No such endpoint.")
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return json_error_response(
                    request,
                    422,
                    "VALIDATION_ERROR",
                    "The request contains invalid data.",
                    {"fields": {name.replace("\x00", "\\u0000"): ["NUL characters are not allowed."]}},
                )
        return self._body_refusal(request)

    def _body_refusal(self, request):
        raw_length = request.META.get("CONTENT_LENGTH", "").strip()
        if not raw_length:
            return None
        if not raw_length.isascii() or not raw_length.isdigit():
            return json_error_response(
                request, 400, "MALFORMED_REQUEST", "Content-Length must be a non-negative integer."
            )
        declared = int(raw_length)
        limit = body_limit_for(request)
        if declared > limit:
            # A view may word the refusal in its own terms (a file upload names the file's limit).
            too_large = _view_attribute(request, "body_too_large")
            error = too_large() if callable(too_large) else None
            response = (
                json_error_response(request, 413, error.code, error.message, error.details)
                if error is not None
                else json_error_response(
                    request,
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"The request body is larger than this endpoint accepts ({limit} bytes).",
                    {"limit_bytes": limit},
                )
            )
            drain_after(response, request, declared)
            return response
        content_type = request.META.get("CONTENT_TYPE", "")
        if declared == 0 or content_type.startswith("multipart/"):
            # Uploads are streamed by Django's multipart parser, never held whole.
            return None
        memory_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if memory_limit is not None and declared > memory_limit:
            return None  # a view with a larger limit reads its body as a stream
        try:
            body = request.body
        except (OSError, AssertionError, RequestDataTooBig):
            # The client stopped sending (or, under the test client, sent less than it said).
            body = b""
        if len(body) < declared:
            response = json_error_response(
                request,
                400,
                "MALFORMED_REQUEST",
                "The body ended before the length its Content-Length declared.",
                {"content_length": declared, "received_bytes": len(body)},
            )
            return response
        return None


def _record_uncaught_exception(sender, request=None, **kwargs) -> None:
    """Django turns an exception raised in a middleware into a response at that
    middleware's own boundary (a 500, or under DEBUG the debug page), so nothing above it
    ever sees the exception. This receiver runs at that moment and leaves the exception on
    the request for FailureEnvelopeMiddleware to answer properly."""
    if request is not None:
        request.uncaught_exception = sys.exc_info()[1]


got_request_exception.connect(_record_uncaught_exception, dispatch_uid="nexus.uncaught_exception")


class FailureEnvelopeMiddleware:
    """Whatever fails below it, wherever (middleware included, DEBUG or not): an /api/
    answer is the JSON envelope, a PostgreSQL or Redis outage is 503 SERVICE_UNAVAILABLE
    with Retry-After, anything else a 500 INTERNAL_ERROR; Django's debug page, which shows
    the caller's token and the settings, never reaches an /api/ client. A page answers a
    dependency outage with a standalone 503 page (the usual pages need the database).
    Sits just under RequestContextMiddleware, so its answers carry X-Request-ID."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        exc = getattr(request, "uncaught_exception", None)
        if exc is None:
            return response
        return self._answer(request, exc) or response

    def process_exception(self, request, exc):
        # A view's exception (DRF views handle their own): answered here, before Django
        # would render the debug page for it.
        if _is_api(request) and not is_dependency_outage(exc):
            return None  # left to Django, which signals Sentry; __call__ then answers it
        return self._answer(request, exc)

    def _answer(self, request, exc):
        if is_dependency_outage(exc):
            log.warning("dependency_outage", exc_type=type(exc).__name__, path=request.path)
            if _is_api(request):
                return outage_json_response(request)
            return outage_page()
        if _is_api(request):
            return json_error_response(
                request,
                500,
                "INTERNAL_ERROR",
                "Something went wrong on our side. Quote the request id if you contact support.",
            )
        return None


def _is_api(request) -> bool:
    return request.path.startswith("/api/")
