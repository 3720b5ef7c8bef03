"""Typed application errors. Services raise these; nexus.api.exceptions maps each to the
error envelope. The `code` of a class is part of the API contract: never rename one."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    # Never raised itself; a subclass without its own code still answers a documented one.
    status_code = 400
    code = "MALFORMED_REQUEST"
    default_message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(AppError):
    status_code = 422
    code = "VALIDATION_ERROR"
    default_message = "The request contains invalid data."


class Unauthorized(AppError):
    status_code = 401
    code = "UNAUTHORIZED"
    default_message = "Authentication credentials were missing or invalid."


class PaymentRequired(AppError):
    status_code = 402
    code = "PAYMENT_REQUIRED"
    default_message = "Not enough credits."


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"
    default_message = "You do not have permission to do this."


class NotFound(AppError):
    status_code = 404
    code = "NOT_FOUND"
    default_message = "Not found."


class Conflict(AppError):
    status_code = 409
    code = "CONFLICT"
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(AppError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The request body is larger than this endpoint accepts."


class LimitReached(Conflict):
    """The organisation is at one of its fairness caps (sources, webhook endpoints, ...)."""

    code = "LIMIT_REACHED"
    default_message = "This organisation has reached one of its limits."


class RateLimited(AppError):
    status_code = 429
    code = "RATE_LIMITED"
    default_message = "Too many requests."


class ServiceUnavailable(AppError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    default_message = "The service is temporarily unavailable."


class MalformedRequest(AppError):
    status_code = 400
    code = "MALFORMED_REQUEST"
    default_message = "The request could not be understood."


class MethodNotAllowed(AppError):
    status_code = 405
    code = "METHOD_NOT_ALLOWED"
    default_message = "This method is not allowed here."


class NotAcceptable(AppError):
    status_code = 406
    code = "NOT_ACCEPTABLE"
    default_message = "No representation of this resource matches the Accept header."


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "This endpoint does not accept that content type."


class InternalError(AppError):
    status_code = 500
    code = "INTERNAL_ERROR"
    default_message = "Something went wrong on our side. Quote the request id if you contact support."


# The error each status answers with when nothing more specific is known (an exception of a
# library that carries only a status): one class per status, its code the documented one.
BY_STATUS: dict[int, type[AppError]] = {
    cls.status_code: cls
    for cls in (
        MalformedRequest,
        Unauthorized,
        PaymentRequired,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        InternalError,
        ServiceUnavailable,
    )
}


def fields_error(
    fields: dict[str, list[str]], *, message: str | None = None, **details: Any
) -> ValidationFailed:
    """422 VALIDATION_ERROR naming the fields at fault: details `{"fields": {name:
    [problems]}, **details}`. The one way field errors are built, so every client reads
    them in the same place."""
    return ValidationFailed(message, details={"fields": fields, **details})


def field_error(field: str, problem: str, *, message: str | None = None, **details: Any) -> ValidationFailed:
    """fields_error for one field and one problem; the message is the problem unless given."""
    return fields_error({field: [problem]}, message=message or problem, **details)
