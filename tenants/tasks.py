"""Periodic upkeep of the public schema."""

from __future__ import annotations

import structlog
from celery import shared_task
from django.core.management import call_command

from tenants.services import token_families_flush_expired

log = structlog.get_logger(__name__)


@shared_task(name="tenants.flush_expired_tokens")
def flush_expired_tokens() -> None:
    # Expired refresh tokens (and their blacklist rows) can never be used again; without
    # this the tables grow by a row per sign-in forever.
    call_command("flushexpiredtokens")
    families = token_families_flush_expired()
    log.info("tokens.flushed_expired", token_families=families)
