"""Idempotency keys for creating POSTs (Stripe's model); see docs/specs/idempotency.md.

The first request with a key claims it (a committed row, so concurrent duplicates see it),
runs, and stores its response in the same transaction as its work. Retries with the same
key and body get that response back with `Idempotent-Replayed: true`; the same key with
another body is refused; a key whose first request is still running is a 409. Records
live in the organisation's schema, so keys are per organisation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from nexus.api.errors import AppError, Conflict, field_error
from nexus.crypto import decrypt, encrypt
from nexus.models import IdempotencyRecord

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Up to 255 characters. A retry with the same key and body within 24 hours returns the first "
        "response (with Idempotent-Replayed: true) instead of doing the work again."
    ),
)
_VALID_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This Idempotency-Key was already used with a different request."


def _canonical_body(body: bytes) -> bytes:
    """The parsed request, not its bytes (as Stripe compares parameters): a JSON body is
    re-serialised with sorted keys and no whitespace, so a client that re-encodes the same
    JSON for its retry is still "the same request". A body that is not JSON (an upload)
    is compared byte for byte; the prefixes keep the two kinds from ever colliding."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return b"raw:" + body
    return b"json:" + json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()


def _digest(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path (which names the API version)
    and the parsed body."""
    return _digest(method, path, _canonical_body(body))


def _legacy_fingerprint(method: str, path: str, body: bytes) -> str:
    """The fingerprint stored before bodies were compared parsed (SHA-256 of the exact
    bytes). Records written then live at most IDEMPOTENCY_TTL_SECONDS (24 h); until they
    expire, a byte-identical retry still matches them, so no client sees a spurious 422
    across the upgrade. Remove once no such record can remain."""
    return _digest(method, path, body)


def _claim(key: str, fingerprint: str) -> tuple[IdempotencyRecord, bool]:
    now = timezone.now()
    abandoned_before = now - timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)
    with transaction.atomic():
        # An expired key is free again; so is one whose first request died without
        # committing (its work and its record commit together, so none was done).
        IdempotencyRecord.objects.filter(key=key, expires_at__lte=now).delete()
        IdempotencyRecord.objects.filter(
            key=key, state=IdempotencyRecord.State.IN_PROGRESS, created_at__lt=abandoned_before
        ).delete()
        return IdempotencyRecord.objects.get_or_create(
            key=key,
            defaults={
                "fingerprint": fingerprint,
                "expires_at": now + timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS),
            },
        )


def _map_fields(body, fields: tuple[str, ...], function):
    """`body` with `function` applied to its non-empty top-level `fields`."""
    if not fields or not isinstance(body, dict):
        return body
    return {key: (function(value) if key in fields and value else value) for key, value in body.items()}


def _replay(record: IdempotencyRecord, secret_fields: tuple[str, ...] = ()) -> Response:
    body = _map_fields(record.response_body, secret_fields, decrypt)
    response = Response(body, status=record.response_status)
    response.is_error_envelope = record.response_is_error
    response["Idempotent-Replayed"] = "true"
    return response


def _caller_scoped(request, key: str) -> str:
    """The key as stored for a view whose answer holds a secret: bound to the caller (the API
    key, else the user), so another admin of the organisation replaying the same
    Idempotency-Key and body gets a request of their own, never the first caller's secret."""
    caller = getattr(request._request, "api_key", None) or request.user
    return "caller:" + hashlib.sha256(f"{type(caller).__name__}:{caller.pk}:{key}".encode()).hexdigest()


def idempotent(
    view_method=None,
    *,
    secret_fields: tuple[str, ...] = (),
    request_body=None,
    per_caller: bool | None = None,
):
    """Decorate an APIView's post(). Requests without the header are untouched. Top-level
    response fields named in `secret_fields` (secrets shown once) are stored encrypted,
    like the secrets themselves, and decrypted for the replay. `request_body(request)`, if
    given, returns the bytes that stand for the body in the fingerprint, for a view whose
    body must not be held whole in memory (an upload: a digest of its parts counted as they
    streamed in); by default the body itself. A view that answers with a secret is keyed per
    caller (`per_caller`, on by default when `secret_fields` are given)."""
    if per_caller is None:
        per_caller = bool(secret_fields)
    if view_method is None:
        return functools.partial(
            idempotent, secret_fields=secret_fields, request_body=request_body, per_caller=per_caller
        )

    @functools.wraps(view_method)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(view, request, *args, **kwargs)
        if not _VALID_KEY.match(key):
            raise field_error(
                HEADER,
                "Invalid idempotency key.",
                message=f"{HEADER} must be 1 to 255 printable ASCII characters.",
            )
        django_request = request._request
        body = request_body(request) if request_body is not None else django_request.body
        fingerprint = request_fingerprint(django_request.method, django_request.path, body)
        stored_key = _caller_scoped(request, key) if per_caller else key
        record, created = _claim(stored_key, fingerprint)
        if not created:
            same_request = record.fingerprint == fingerprint or record.fingerprint == _legacy_fingerprint(
                django_request.method, django_request.path, body
            )
            if not same_request:
                raise IdempotencyKeyReused()
            if record.state == IdempotencyRecord.State.IN_PROGRESS:
                raise Conflict(
                    "A request with this Idempotency-Key is still being processed; retry shortly.",
                    details={"reason": "request_in_progress"},
                )
            log.info("idempotency.replayed", key=key)
            return _replay(record, secret_fields)

        try:
            with transaction.atomic():
                try:
                    response = view_method(view, request, *args, **kwargs)
                except Exception as exc:
                    # Turned into its error response here, so a refusal (4xx) is stored
                    # and replayed like a success; the view's work is rolled back.
                    response = view.handle_exception(exc)
                    transaction.set_rollback(True)
                if response.status_code < 500 and not transaction.get_rollback():
                    _store(record, response, secret_fields)
        except Exception:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        if response.status_code >= 500:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
        elif record.state != IdempotencyRecord.State.COMPLETED:
            _store(record, response, secret_fields)  # an error response: the view's work was rolled back
        return response

    return wrapper


def _store(record: IdempotencyRecord, response: Response, secret_fields: tuple[str, ...] = ()) -> None:
    body = _map_fields(response.data, secret_fields, encrypt)
    record.state = IdempotencyRecord.State.COMPLETED
    record.response_status = response.status_code
    record.response_body = body
    record.response_is_error = bool(getattr(response, "is_error_envelope", False))
    record.save(update_fields=["state", "response_status", "response_body", "response_is_error"])


def idempotency_purge_expired() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
