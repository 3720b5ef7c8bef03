"""Periodic upkeep of per-organisation plumbing."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import tenant_context

from nexus.idempotency import idempotency_purge_expired
from tenants.models import Organisation


@shared_task(name="nexus.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> None:
    for org in Organisation.objects.exclude(schema_name="public"):
        with tenant_context(org):
            purge_organisation_idempotency_keys.delay()


@shared_task(name="nexus.purge_organisation_idempotency_keys", ignore_result=True)
def purge_organisation_idempotency_keys() -> None:
    idempotency_purge_expired()
