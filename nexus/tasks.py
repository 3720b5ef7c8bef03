"""Periodic upkeep of per-organisation plumbing. Thin: each task calls one service."""

from __future__ import annotations

from celery import shared_task

from nexus.celery import fan_out
from nexus.idempotency import idempotency_purge_expired


@shared_task(name="nexus.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> None:
    fan_out("nexus.purge_organisation_idempotency_keys")


@shared_task(name="nexus.purge_organisation_idempotency_keys", ignore_result=True)
def purge_organisation_idempotency_keys() -> None:
    idempotency_purge_expired()
