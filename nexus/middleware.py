"""Request id and the one log line per request.

Every response carries X-Request-ID (the client's, when it sent a well-formed one), and
every log line written while handling the request carries it too, with org_id and user_id
once the caller is known.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog

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
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
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
