"""Periodic reconciliation of purchases whose Stripe webhook never arrived."""

from __future__ import annotations

from celery import shared_task
from django_tenants.utils import tenant_context

from billing.purchases import billing_configured, purchases_reconcile
from tenants.models import Organisation


@shared_task(name="billing.reconcile", ignore_result=True)
def reconcile() -> None:
    if not billing_configured():
        return
    for org in Organisation.objects.filter(is_active=True).exclude(schema_name="public"):
        with tenant_context(org):
            reconcile_organisation.delay()


@shared_task(name="billing.reconcile_organisation", ignore_result=True)
def reconcile_organisation() -> None:
    purchases_reconcile()
