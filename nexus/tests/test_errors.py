"""The error classes define each status and code once: field errors are built one way, and
DRF's exceptions answer with the code of the application error of the same meaning."""

import pytest
from rest_framework import exceptions as drf

from nexus.api import errors
from nexus.api.exceptions import exception_handler


def test_a_field_error_names_its_field_and_says_the_problem():
    error = errors.field_error("amount", "Invalid amount: 0.")
    assert isinstance(error, errors.ValidationFailed)
    assert error.message == "Invalid amount: 0."
    assert error.details == {"fields": {"amount": ["Invalid amount: 0."]}}


def test_a_field_error_may_carry_a_summary_and_more_details():
    error = errors.field_error("config", "Required.", message="A source needs a config.", line=3)
    assert error.message == "A source needs a config."
    assert error.details == {"fields": {"config": ["Required."]}, "line": 3}


def test_fields_error_names_several_fields():
    error = errors.fields_error({"text": ["Give one."], "record_id": ["Give one."]}, message="Give one.")
    assert error.details == {"fields": {"text": ["Give one."], "record_id": ["Give one."]}}
    assert error.status_code == 422
    assert error.code == "VALIDATION_ERROR"


def test_each_status_has_one_documented_code():
    assert {status: cls.code for status, cls in errors.BY_STATUS.items()} == {
        400: "MALFORMED_REQUEST",
        401: "UNAUTHORIZED",
        402: "PAYMENT_REQUIRED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        406: "NOT_ACCEPTABLE",
        409: "CONFLICT",
        413: "PAYLOAD_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
        422: "VALIDATION_ERROR",
        429: "RATE_LIMITED",
        500: "INTERNAL_ERROR",
        503: "SERVICE_UNAVAILABLE",
    }


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (drf.ValidationError({"name": ["Required."]}), 422, "VALIDATION_ERROR"),
        (drf.ParseError(), 400, "MALFORMED_REQUEST"),
        (drf.NotAuthenticated(), 401, "UNAUTHORIZED"),
        (drf.AuthenticationFailed(), 401, "UNAUTHORIZED"),
        (drf.PermissionDenied(), 403, "FORBIDDEN"),
        (drf.NotFound(), 404, "NOT_FOUND"),
        (drf.MethodNotAllowed("PUT"), 405, "METHOD_NOT_ALLOWED"),
        (drf.NotAcceptable(), 406, "NOT_ACCEPTABLE"),
        (drf.UnsupportedMediaType("text/xml"), 415, "UNSUPPORTED_MEDIA_TYPE"),
        (drf.Throttled(wait=3), 429, "RATE_LIMITED"),
    ],
)
def test_drf_exceptions_answer_with_the_code_of_their_application_error(exc, status, code):
    response = exception_handler(exc, {})
    assert response.status_code == status
    assert response.data["error"]["code"] == code


def test_an_unnamed_api_exception_answers_with_the_code_of_its_status():
    class PaymentNeeded(drf.APIException):
        status_code = 402

    assert exception_handler(PaymentNeeded(), {}).data["error"]["code"] == "PAYMENT_REQUIRED"

    class Teapot(drf.APIException):
        status_code = 418

    assert exception_handler(Teapot(), {}).data["error"]["code"] == "MALFORMED_REQUEST"
