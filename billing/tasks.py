"""Periodic reconciliation of purchases whose Stripe webhook never arrived. Thin: the
decisions are billing.services.purchases'."""

from __future__ import annotations

from celery import shared_task

from billing.services.purchases import billing_configured, purchases_reconcile
from nexus.celery import fan_out


@shared_task(name="billing.reconcile", ignore_result=True)
def reconcile() -> None:
    if billing_configured():  # without Stripe keys there is nothing to ask Stripe
        fan_out("billing.reconcile_organisation")


@shared_task(name="billing.reconcile_organisation", ignore_result=True)
def reconcile_organisation() -> None:
    purchases_reconcile()
