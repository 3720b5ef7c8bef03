"""Webhook endpoints for tests, made through webhooks.services (URL checks, secret, caps
and audit as in the product). Call inside the organisation's schema."""

from __future__ import annotations

from collections.abc import Iterable

from webhooks import services
from webhooks.models import WebhookEndpoint

EVENTS = ("job.completed", "job.failed")


def endpoint_create(*, url: str, events: Iterable[str] = EVENTS) -> tuple[WebhookEndpoint, str]:
    """The endpoint and its signing secret (shown once, as the API does)."""
    return services.webhook_endpoint_create(url=url, event_types=list(events))
