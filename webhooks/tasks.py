"""Celery tasks for webhooks: one task per attempt. Thin: each calls one service; the
schedule and its decisions are in webhooks.services."""

from __future__ import annotations

from celery import shared_task

from nexus.celery import fan_out, wait_for_database
from webhooks import services


# One attempt is one HTTP request bounded by WEBHOOK_TIMEOUT_SECONDS; far less than the default.
@shared_task(
    name="webhooks.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
def deliver(delivery_id: str) -> None:
    # An attempt waits out a database outage rather than dropping its message; should the
    # database fail between the request and its record, the retry may send the delivery
    # again, which its stable id lets receivers recognise (at least once, by design).
    wait_for_database(lambda: services.webhook_attempt(delivery_id=delivery_id), what="webhook attempt")


@shared_task(name="webhooks.sweep", ignore_result=True)
def sweep() -> None:
    fan_out("webhooks.sweep_organisation")


@shared_task(name="webhooks.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.webhooks_sweep()
