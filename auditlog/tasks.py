"""Applies the audit log's retention (AUDIT_LOG_RETENTION_DAYS), daily from beat."""

from __future__ import annotations

from celery import shared_task

from auditlog.services import audit_log_purge


@shared_task(name="auditlog.purge")
def purge() -> int:
    return audit_log_purge()
