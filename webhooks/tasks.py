"""Celery tasks for webhooks: one task per attempt, thin; the schedule is in the service."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import tenant_context

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
    services.webhook_attempt(delivery_id=delivery_id)


@shared_task(name="webhooks.sweep", ignore_result=True)
def sweep() -> None:
    for org in Organisation.objects.filter(is_active=True).exclude(schema_name="public"):
        with tenant_context(org):
            sweep_organisation.delay()


@shared_task(name="webhooks.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.webhooks_sweep()
