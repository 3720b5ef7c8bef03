"""Reads of webhook endpoints and deliveries (organisation schema): another organisation's
ids do not exist here, so they are the same 404 as unknown ones."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from nexus.api.errors import NotFound
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


def endpoint_list() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.all()


def endpoint_get(*, endpoint_id) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.get(pk=endpoint_id)
    except (WebhookEndpoint.DoesNotExist, ValueError):
        raise NotFound("No such webhook endpoint.") from None


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
    delivery = delivery_list().filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such webhook delivery.")
    return delivery
