"""Reads of webhook endpoints and deliveries (organisation schema): another organisation's
ids do not exist here, so they are the same 404 as unknown ones."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch, QuerySet

from nexus.access import access_by_id
from webhooks.events import EVENT_TYPES, EventType
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookNotice


def event_type_list() -> list[EventType]:
    """The event catalogue, in its order: the same for every organisation."""
    return list(EVENT_TYPES.values())


def endpoint_list() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.all()


def endpoint_get(*, endpoint_id) -> WebhookEndpoint:
    return access_by_id(WebhookEndpoint.objects.all(), endpoint_id, not_found="No such webhook endpoint.")


def delivery_list(
    *, endpoint: WebhookEndpoint | None = None, statuses=None, event_types=None
) -> QuerySet[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.select_related("endpoint").prefetch_related(
        Prefetch("attempts", queryset=WebhookAttempt.objects.order_by("number"))
    )
    if endpoint is not None:
        deliveries = deliveries.filter(endpoint=endpoint)
    if statuses:
        deliveries = deliveries.filter(status__in=statuses)
    if event_types:
        deliveries = deliveries.filter(event_type__in=event_types)
    return deliveries


def delivery_get(*, delivery_id: str) -> WebhookDelivery:
    return access_by_id(delivery_list(), delivery_id, not_found="No such webhook delivery.")


def endpoint_health(endpoint: WebhookEndpoint) -> dict:
    """What the owner needs to know about an endpoint's receiver, from its stored counters."""
    if not endpoint.active:
        status = "disabled"
    elif endpoint.consecutive_failures >= settings.WEBHOOK_FAILING_AFTER_FAILURES:
        status = "failing"
    else:
        status = "healthy"
    return {
        "status": status,
        "failing_since": endpoint.failing_since,
        "consecutive_failures": endpoint.consecutive_failures,
        "last_error": endpoint.last_error,
        "last_success_at": endpoint.last_success_at,
    }


def notice_list_open() -> QuerySet[WebhookNotice]:
    """Notices for the dashboard: not resolved by a recovery and not dismissed by an admin."""
    return WebhookNotice.objects.select_related("endpoint").filter(
        resolved_at__isnull=True, dismissed_at__isnull=True
    )


def notice_get(*, notice_id) -> WebhookNotice:
    return access_by_id(WebhookNotice.objects.all(), notice_id, not_found="No such notice.")
