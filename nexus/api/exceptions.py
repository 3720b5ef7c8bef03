"""The one place errors become responses. Every API error has the same envelope:
{"error": {"code", "message", "details"}, "meta": {"request_id", ...}}; nothing about the
server's internals (trace, SQL, table names, settings) is ever put in it."""

from __future__ import annotations

from typing import Any

import sentry_sdk
import structlog
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from nexus.api.errors import (
    BY_STATUS,
    AppError,
    Forbidden,
    InternalError,
    MalformedRequest,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

log = structlog.get_logger(__name__)

# DRF's exceptions answer as the application error of the same meaning, so a status and
# its code are defined once (nexus.api.errors). Checked in order; subclasses first.
_DRF_ERRORS: list[tuple[type[Exception], type[AppError]]] = [
    (drf.ValidationError, ValidationFailed),
    (drf.ParseError, MalformedRequest),
    (drf.NotAuthenticated, Unauthorized),
    (drf.AuthenticationFailed, Unauthorized),
    (drf.PermissionDenied, Forbidden),
    (drf.NotFound, NotFound),
    (drf.MethodNotAllowed, MethodNotAllowed),
    (drf.NotAcceptable, NotAcceptable),
    (drf.UnsupportedMediaType, UnsupportedMediaType),
    (drf.Throttled, RateLimited),
]


# A dependency that is down, not a bug: the client should retry, and is told when.
_OUTAGE_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
OUTAGE_RETRY_AFTER_SECONDS = 5
OUTAGE_MESSAGE = "The service is temporarily unavailable. Retry after the number of seconds in Retry-After."


def is_dependency_outage(exc: BaseException) -> bool:
    """PostgreSQL or Redis unreachable (or a statement cut off by it): a 503, never a 500."""
    return isinstance(exc, _OUTAGE_ERRORS)


def outage_json_response(request) -> JsonResponse:
    response = json_error_response(request, 503, "SERVICE_UNAVAILABLE", OUTAGE_MESSAGE)
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
    return response


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def json_error_response(
    request, status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JsonResponse:
    """The envelope outside DRF (middleware, Django's error views)."""
    body = error_body(code, message, details)
    body["meta"] = {"request_id": getattr(request, "request_id", None)}
    response = JsonResponse(body, status=status)
    # Set here because a refusal from early middleware never passes CommonMiddleware, and a
    # client that keeps the connection open needs to know where the answer ends.
    response["Content-Length"] = str(len(response.content))
    return response


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = Response(error_body(code, message, details), status=status, headers=headers)
    response.is_error_envelope = True
    return response


def _validation_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {"fields": detail}
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"non_field_errors": [detail]}


def _backstop(exc: Exception) -> AppError | None:
    """Client-caused failures the input checks should have stopped earlier; if one gets
    through it is still the client's 4xx, not our 500."""
    if isinstance(exc, RecursionError):
        return MalformedRequest("The request is nested too deeply.")
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, DataError):
        # A value PostgreSQL cannot store or compare (NUL, out of range); its text names
        # tables and types, so it is logged, not sent.
        log.warning("data_error_from_input", error=str(exc).splitlines()[0][:200])
        return ValidationFailed("A value in the request cannot be stored.")
    if isinstance(exc, UnicodeError):
        return ValidationFailed("The request contains characters that cannot be encoded.")
    return None


def exception_handler(exc: Exception, context: dict) -> Response:
    set_rollback()

    if is_dependency_outage(exc):
        # Logged without its text: a driver's message can name hosts and settings.
        log.warning("dependency_outage", exc_type=type(exc).__name__)
        return error_response(
            503,
            "SERVICE_UNAVAILABLE",
            OUTAGE_MESSAGE,
            headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
        )

    backstop = _backstop(exc)
    if backstop is not None:
        exc = backstop

    if isinstance(exc, AppError):
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)

    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = drf.ValidationError(exc.messages)

    for exc_class, error in _DRF_ERRORS:
        if isinstance(exc, exc_class):
            headers: dict[str, str] = {}
            if getattr(exc, "auth_header", None):
                headers["WWW-Authenticate"] = exc.auth_header
            if getattr(exc, "wait", None):
                headers["Retry-After"] = str(int(exc.wait))
            if isinstance(exc, drf.ValidationError):
                message = ValidationFailed.default_message
                details = _validation_details(exc.detail)
            else:
                message = str(exc.detail)
                details = {}
            return error_response(error.status_code, error.code, message, details, headers)

    if isinstance(exc, drf.APIException):
        # Only documented codes reach clients: an unnamed 4xx is a malformed request.
        fallback = InternalError if exc.status_code >= 500 else MalformedRequest
        code = BY_STATUS.get(exc.status_code, fallback).code
        return error_response(exc.status_code, code, str(exc.detail))

    # Anything else is a bug: record it fully for us, say nothing about it to the client.
    log.exception("unhandled_exception", exc_type=type(exc).__name__)
    sentry_sdk.capture_exception(exc)
    return error_response(InternalError.status_code, InternalError.code, InternalError.default_message)
