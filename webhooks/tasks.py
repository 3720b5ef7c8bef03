"""Celery tasks for webhooks: one task per attempt, thin; the schedule is in the service."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import tenant_context

from nexus.celery import wait_for_database
from tenants.models import Organisation
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
    for org in Organisation.objects.filter(is_active=True).exclude(schema_name="public"):
        with tenant_context(org):
            sweep_organisation.delay()


@shared_task(name="webhooks.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.webhooks_sweep()
