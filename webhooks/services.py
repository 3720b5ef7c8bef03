"""Every write to webhook endpoints and deliveries, and the sending of one attempt.

Runs inside the organisation's schema. Deliveries are an outbox: `webhook_publish` writes
them in the caller's transaction and sends their task on commit; the periodic sweep
re-sends any whose task was lost. An attempt is claimed by a conditional update, so two
workers never send the same attempt.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from auditlog.services import audit_record, changed_fields
from nexus.api.errors import Conflict, Forbidden, field_error
from nexus.api.fields import plain_text
from nexus.celery import send_on_commit
from nexus.crypto import decrypt, encrypt
from nexus.net import UnsafeURL, outbound_verify, pinned, read_limited, resolve_public_url, url_on_record
from tenants.models import Role
from tenants.services import organisation_cap_check
from webhooks import payloads
from webhooks.events import SUBSCRIBABLE_EVENTS, TEST_EVENT, event_type_get
from webhooks.metrics import ATTEMPT_DURATION, DELIVERY_ATTEMPTS, DELIVERY_LATENCY, ENDPOINTS_DISABLED
from webhooks.models import (
    DeliveryStatus,
    NoticeKind,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookNotice,
)

log = structlog.get_logger(__name__)

RESPONSE_EXCERPT_BYTES = 1024
USER_AGENT = "NexusAPI-Webhooks/1.0"
DELIVER_TASK = "webhooks.deliver"  # sent by name: webhooks.tasks imports this module


def _attempts_per_cycle() -> int:
    return len(settings.WEBHOOK_RETRY_DELAYS) + 1


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    if len(url) > 2048:
        raise field_error("url", "The URL is longer than 2,048 characters.")
    try:
        resolve_public_url(url, require_https=settings.WEBHOOK_REQUIRE_HTTPS)
    except UnsafeURL as exc:
        raise field_error("url", str(exc), reason="unsafe_url") from exc
    return url


def _clean_event_types(event_types) -> list[str]:
    if not isinstance(event_types, list) or not event_types:
        raise field_error("event_types", f"Subscribe to at least one of {sorted(SUBSCRIBABLE_EVENTS)}.")
    unknown = sorted({str(e) for e in event_types} - set(SUBSCRIBABLE_EVENTS))
    if unknown:
        raise field_error("event_types", f"Unknown event types {unknown}; use {sorted(SUBSCRIBABLE_EVENTS)}.")
    return sorted(set(event_types))


# --- Endpoints -------------------------------------------------------------------------------


def _settings_on_record(endpoint: WebhookEndpoint) -> dict:
    return {
        "url": url_on_record(endpoint.url),
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "active": endpoint.active,
    }


def webhook_endpoint_create(
    *, url: str, event_types: list[str], description: str = "", active: bool = True
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint. Returns it with its signing secret, which is never shown again.
    LimitReached (409) at the organisation's cap of endpoints."""
    description = plain_text(description or "", field="description")
    secret = _new_secret()
    url, event_types = _clean_url(url), _clean_event_types(event_types)
    with transaction.atomic():
        organisation_cap_check(
            cap="max_webhook_endpoints", existing=WebhookEndpoint.objects.all(), what="webhook endpoints"
        )
        endpoint = WebhookEndpoint.objects.create(
            url=url,
            event_types=event_types,
            description=description.strip()[:255],
            active=active,
            secret_encrypted=encrypt(secret),
        )
        audit_record(
            action="webhook.created",
            target_type="webhook",
            target_id=endpoint.pk,
            target_label=url_on_record(endpoint.url),
            after=_settings_on_record(endpoint),
        )
    log.info("webhook.endpoint_created", endpoint_id=str(endpoint.pk))
    return endpoint, secret


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **changes) -> WebhookEndpoint:
    # Only the fields changed here are written: the health counters belong to the delivery
    # workers, which may have moved them since this copy of the endpoint was read.
    fields = ["updated_at"]
    before = _settings_on_record(endpoint)
    held_url = endpoint.url
    if "url" in changes:
        endpoint.url = _clean_url(changes["url"])
        fields.append("url")
    if "event_types" in changes:
        endpoint.event_types = _clean_event_types(changes["event_types"])
        fields.append("event_types")
    if "description" in changes:
        endpoint.description = plain_text(changes["description"] or "", field="description").strip()[:255]
        fields.append("description")
    with transaction.atomic():
        if "active" in changes:
            if changes["active"] and not endpoint.active:
                # Re-enabling is the admin saying the receiver is fixed: start counting afresh,
                # and the dashboard's notices about it have been answered.
                endpoint.consecutive_failures = 0
                endpoint.failing_since = None
                endpoint.disabled_at = None
                endpoint.disabled_reason = ""
                fields += ["consecutive_failures", "failing_since", "disabled_at", "disabled_reason"]
                _resolve_notices(endpoint.pk)
            endpoint.active = bool(changes["active"])
            fields.append("active")
        endpoint.save(update_fields=fields)
        was, now = changed_fields(before, _settings_on_record(endpoint))
        # The URL's credentials and query are never recorded: a change to them alone is
        # recorded as one, without either value.
        unshown = ["url"] if endpoint.url != held_url and "url" not in now else []
        if now or unshown:
            audit_record(
                action="webhook.updated",
                target_type="webhook",
                target_id=endpoint.pk,
                target_label=url_on_record(endpoint.url),
                before=was,
                after=now,
                facts={"unshown_changes": unshown} if unshown else None,
            )
    endpoint.refresh_from_db()
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint with its deliveries and attempts (the delivery log goes with it).
    A delivery task already queued finds its delivery gone and returns."""
    endpoint_id = str(endpoint.pk)
    with transaction.atomic():
        deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).count()
        audit_record(
            action="webhook.deleted",
            target_type="webhook",
            target_id=endpoint_id,
            target_label=url_on_record(endpoint.url),
            before=_settings_on_record(endpoint),
        )
        endpoint.delete()
    log.info("webhook.endpoint_deleted", endpoint_id=endpoint_id, deliveries=deliveries)


def webhook_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret; for WEBHOOK_SECRET_OVERLAP_HOURS deliveries carry signatures
    with both, so receivers can switch without losing a delivery."""
    secret = _new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = timezone.now() + timedelta(
        hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS
    )
    endpoint.secret_encrypted = encrypt(secret)
    with transaction.atomic():
        endpoint.save(
            update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at"]
        )
        audit_record(
            action="webhook.secret_rotated",
            target_type="webhook",
            target_id=endpoint.pk,
            target_label=url_on_record(endpoint.url),
            facts={"previous_secret_valid_until": endpoint.previous_secret_expires_at.isoformat()},
        )
    log.info("webhook.secret_rotated", endpoint_id=str(endpoint.pk))
    return secret


def _disable(endpoint_id, reason: str, *, cause: str) -> None:
    """Switch the endpoint off; `cause` (gone, failures) is the metric's label."""
    disabled = WebhookEndpoint.objects.filter(pk=endpoint_id, active=True).update(
        active=False, disabled_at=timezone.now(), disabled_reason=reason[:500]
    )
    if disabled:
        _open_notice(endpoint_id, NoticeKind.DISABLED, f"Disabled: {reason}")
        transaction.on_commit(lambda: ENDPOINTS_DISABLED.labels(reason=cause).inc())
    log.warning("webhook.endpoint_disabled", endpoint_id=str(endpoint_id), cause=cause, reason=reason)


# --- Health notices ----------------------------------------------------------------------------


def _open_notice(endpoint_id, kind: str, message: str) -> None:
    """Write the endpoint's open notice of `kind` unless one is open already: a receiver
    that stays down is announced once. Runs in the caller's transaction; the constraint
    settles a race between two workers (the loser's savepoint rolls back, nothing else)."""
    open_notices = WebhookNotice.objects.filter(endpoint_id=endpoint_id, kind=kind, resolved_at__isnull=True)
    if open_notices.exists():
        return
    try:
        with transaction.atomic():
            WebhookNotice.objects.create(endpoint_id=endpoint_id, kind=kind, message=message[:1000])
    except IntegrityError:
        return
    log.warning("webhook.notice_opened", endpoint_id=str(endpoint_id), kind=kind)


def _resolve_notices(endpoint_id) -> None:
    resolved = WebhookNotice.objects.filter(endpoint_id=endpoint_id, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )
    if resolved:
        log.info("webhook.notices_resolved", endpoint_id=str(endpoint_id), notices=resolved)


def webhook_notice_dismiss(*, notice: WebhookNotice, user) -> WebhookNotice:
    """An admin has seen the notice: it leaves the dashboard. A second dismissal keeps the first."""
    if user.role != Role.ADMIN:
        raise Forbidden("Only an admin of your organisation can dismiss a notice.")
    WebhookNotice.objects.filter(pk=notice.pk, dismissed_at__isnull=True).update(
        dismissed_at=timezone.now(), dismissed_by_id=user.pk
    )
    notice.refresh_from_db()
    return notice


# --- Publishing (the outbox) -------------------------------------------------------------------


def _enqueue(delivery_id: str, *, countdown: float = 0) -> None:
    """Sent on commit, in this organisation's schema; the sweep covers a broker outage."""
    send_on_commit(DELIVER_TASK, delivery_id, countdown=countdown, log_event="webhook.enqueue_failed")


def _create_delivery(endpoint: WebhookEndpoint, event_type: str, data: dict) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_type=event_type,
        payload=payloads.body(event_type=event_type, data=data),
        attempt_limit=_attempts_per_cycle(),
        next_attempt_at=timezone.now(),
    )
    _enqueue(delivery.pk)
    return delivery


_NOTHING = object()


def webhook_publish(
    *, event_type: str, subject: Any = _NOTHING, data: dict | None = None
) -> list[WebhookDelivery]:
    """Record `event_type` for every active endpoint subscribed to it, in the caller's
    transaction; each is sent once that transaction commits.

    `subject` is what the event is about (the job, the purchase): the catalogue's builder
    for the event turns it into the body's data, so the body is the event's contract
    (webhooks/payloads.py), never an API representation. `data` sends a dict as given
    instead; it exists for tests of the transport, and application code passes `subject`.
    ValueError (a programming error) for an unregistered event, or for both or neither."""
    event = event_type_get(event_type)
    if not event.subscribable:
        raise ValueError(f"Webhook event type {event_type!r} is sent only on request")
    if (subject is _NOTHING) == (data is None):
        raise ValueError("webhook_publish takes exactly one of `subject` and `data`")
    if data is None:
        data = event.build(subject)
    endpoints = WebhookEndpoint.objects.filter(active=True, event_types__contains=[event_type])
    return [_create_delivery(endpoint, event_type, data) for endpoint in endpoints]


def webhook_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    return _create_delivery(endpoint, TEST_EVENT, event_type_get(TEST_EVENT).build(endpoint))


def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a finished delivery again (same webhook-id, a fresh cycle of attempts)."""
    updated = (
        WebhookDelivery.objects.filter(pk=delivery.pk)
        .exclude(status=DeliveryStatus.PENDING)
        .update(
            status=DeliveryStatus.PENDING,
            attempt_limit=F("attempt_count") + _attempts_per_cycle(),
            next_attempt_at=timezone.now(),
            completed_at=None,
        )
    )
    if not updated:
        raise Conflict("This delivery is still being attempted; wait for it to finish.")
    _enqueue(delivery.pk)
    delivery.refresh_from_db()
    return delivery


# --- Sending one attempt -----------------------------------------------------------------------


def _secrets_for(endpoint: WebhookEndpoint) -> list[str]:
    keys = [decrypt(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > timezone.now()
    ):
        keys.append(decrypt(endpoint.previous_secret_encrypted))
    return keys


def signed_headers(
    *, message_id: str, body: str, secrets_: list[str], timestamp: float | None = None
) -> dict:
    sent_at = datetime.fromtimestamp(int(timestamp or time.time()), tz=UTC)
    signatures = " ".join(Webhook(secret).sign(message_id, sent_at, body) for secret in secrets_)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signatures,
    }


def _claim_attempt(delivery_id: str) -> WebhookDelivery | None:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .select_related("endpoint")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .first()
        )
        if delivery is None or delivery.attempt_count >= delivery.attempt_limit:
            return None
        delivery.attempt_count += 1
        # A lease: if this worker dies mid-attempt, the sweep finds the delivery overdue.
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS)
        delivery.save(update_fields=["attempt_count", "next_attempt_at"])
    return delivery


def _send(delivery: WebhookDelivery) -> tuple[int | None, str, str]:
    """POST the delivery once. Returns (status code or None, error, response excerpt)."""
    endpoint = delivery.endpoint
    try:
        addresses = resolve_public_url(endpoint.url, require_https=settings.WEBHOOK_REQUIRE_HTTPS)
    except UnsafeURL as exc:
        return None, f"Refused: {exc}", ""
    target = pinned(endpoint.url, addresses)
    body = json.dumps(delivery.payload, separators=(",", ":"))
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **target.headers,
        **signed_headers(message_id=delivery.pk, body=body, secrets_=_secrets_for(endpoint)),
    }
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    deadline = time.monotonic() + timeout
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=False, trust_env=False, verify=outbound_verify()
            ) as client,
            client.stream(
                "POST", target.url, content=body.encode(), headers=headers, extensions=target.extensions
            ) as response,
        ):
            # Only the first 1 KB is kept, and no receiver may hold a worker past the timeout.
            excerpt, _cut = read_limited(response, limit=RESPONSE_EXCERPT_BYTES, deadline=deadline)
    except httpx.TimeoutException:
        return None, f"Timed out after {timeout:g} s.", ""
    except httpx.HTTPError as exc:
        return None, f"Could not connect: {type(exc).__name__}.", ""
    return response.status_code, "", excerpt.decode("utf-8", errors="replace")


def _error_class(status_code: int | None, error: str) -> str:
    """A short, fixed-vocabulary name for why an attempt failed (for logs and searches)."""
    if status_code is not None:
        return f"http_{status_code}"
    if error.startswith("Timed out"):
        return "timeout"
    if error.startswith("Could not connect: "):
        return error.removeprefix("Could not connect: ").rstrip(".")
    if error.startswith("Refused:"):
        return "unsafe_url"
    return "endpoint_disabled"


def webhook_attempt(*, delivery_id: str) -> WebhookAttempt | None:
    """Make the next attempt of a pending delivery and decide what follows: success,
    another attempt after the next delay of the schedule, or failure (a 410 Gone also
    disables the endpoint; so do WEBHOOK_DISABLE_AFTER_FAILURES failed deliveries in a row)."""
    delivery = _claim_attempt(delivery_id)
    if delivery is None:
        return None
    with structlog.contextvars.bound_contextvars(
        delivery_id=str(delivery.pk), endpoint_id=str(delivery.endpoint_id)
    ):
        return _attempt(delivery)


def _attempt(delivery: WebhookDelivery) -> WebhookAttempt:
    endpoint = delivery.endpoint
    started_at = timezone.now()
    started = time.perf_counter()
    if endpoint.active:
        status_code, error, excerpt = _send(delivery)
    else:
        status_code, error, excerpt = (
            None,
            f"Endpoint disabled: {endpoint.disabled_reason or 'by an admin'}.",
            "",
        )
    duration_ms = int((time.perf_counter() - started) * 1000)
    succeeded = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not succeeded and not error:
        error = f"HTTP {status_code}" + (" (redirects are not followed)" if 300 <= status_code < 400 else "")
    next_delay = None

    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempt_count,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error[:500],
            response_excerpt=excerpt,
            succeeded=succeeded,
        )
        if succeeded:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.completed_at = timezone.now()
            delivery.save(update_fields=["status", "completed_at"])
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
                consecutive_failures=0, failing_since=None, last_success_at=delivery.completed_at
            )
            _resolve_notices(endpoint.pk)
        elif status_code == 410:
            _finish_failed(delivery)
            _note_error(endpoint.pk, error)
            _disable(
                endpoint.pk,
                "The receiver answered 410 Gone. Fix the URL, then re-enable the endpoint.",
                cause="gone",
            )
        elif endpoint.active and delivery.attempt_count < delivery.attempt_limit:
            _note_error(endpoint.pk, error)
            cycle_position = delivery.attempt_count - (delivery.attempt_limit - _attempts_per_cycle())
            next_delay = settings.WEBHOOK_RETRY_DELAYS[cycle_position - 1]
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=next_delay)
            delivery.save(update_fields=["next_attempt_at"])
            _enqueue(delivery.pk, countdown=next_delay)
        else:
            _finish_failed(delivery)
            # A disabled endpoint's leftovers fail without a request: the receiver's own last
            # error stays the one shown.
            failures = _count_failure(endpoint.pk, error if endpoint.active else None)
            # An endpoint an admin switched off is not news; one whose receiver is down is.
            if endpoint.active and failures >= settings.WEBHOOK_FAILING_AFTER_FAILURES:
                _open_notice(
                    endpoint.pk,
                    NoticeKind.FAILING,
                    f"The last {failures} deliveries to {endpoint.url} all failed (latest: {error}).",
                )
            if failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES:
                _disable(
                    endpoint.pk,
                    f"The last {failures} deliveries all failed (latest: {error}). "
                    "Fix the receiver, then re-enable the endpoint.",
                    cause="failures",
                )
    outcome = "succeeded" if succeeded else "retrying" if next_delay is not None else "failed"
    DELIVERY_ATTEMPTS.labels(outcome=outcome).inc()
    ATTEMPT_DURATION.observe(duration_ms / 1000)
    if succeeded:
        DELIVERY_LATENCY.observe(max((delivery.completed_at - delivery.created_at).total_seconds(), 0.0))
        log.info(
            "webhook.delivered", attempt=attempt.number, status_code=status_code, duration_ms=duration_ms
        )
    else:
        log.warning(
            "webhook.attempt_failed",
            attempt=attempt.number,
            error_class=_error_class(status_code, error),
            status_code=status_code,
            outcome=outcome,
            next_delay_s=next_delay,
            duration_ms=duration_ms,
        )
    return attempt


def _finish_failed(delivery: WebhookDelivery) -> None:
    delivery.status = DeliveryStatus.FAILED
    delivery.completed_at = timezone.now()
    delivery.save(update_fields=["status", "completed_at"])


def _note_error(endpoint_id, error: str) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(last_error=error[:500])


def _count_failure(endpoint_id, error: str | None) -> int:
    """One more failed delivery in a row; the first of a run stamps `failing_since`."""
    changes = {
        "consecutive_failures": F("consecutive_failures") + 1,
        "failing_since": Coalesce(F("failing_since"), timezone.now()),
    }
    if error is not None:
        changes["last_error"] = error[:500]
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(**changes)
    return WebhookEndpoint.objects.values_list("consecutive_failures", flat=True).get(pk=endpoint_id)


def webhooks_sweep() -> int:
    """Send again pending deliveries whose attempt is more than a minute overdue (their
    task was lost: broker down at commit, worker killed)."""
    now = timezone.now()
    overdue = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lt=now - timedelta(seconds=60)
        ).values_list("pk", flat=True)[:500]
    )
    for delivery_id in overdue:
        with transaction.atomic():
            if WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
                next_attempt_at=now
            ):
                _enqueue(delivery_id)
    if overdue:
        log.info("webhooks.swept", resent=len(overdue))
    return len(overdue)
