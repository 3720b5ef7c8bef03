"""Writes to the audit log. `audit_record` adds one event in the caller's transaction, so
the record and the change commit or roll back together; nothing else writes here, and
nothing ever changes a row (the database refuses it). Runs in any schema: the table lives
in public, which every organisation's search path includes."""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from auditlog.actions import ACTIONS
from auditlog.context import Actor, current_actor
from auditlog.models import AuditEvent

log = structlog.get_logger(__name__)

PURGE_BATCH = 10_000
# audit_record's default organisation: the one whose schema the connection is in.
CURRENT = object()


def _current_organisation_id():
    tenant = getattr(connection, "tenant", None)
    schema = getattr(tenant, "schema_name", "public")
    if tenant is None or schema == "public":
        raise ValueError("audit_record outside an organisation's schema needs organisation_id")
    if getattr(tenant, "pk", None) is not None:
        return tenant.pk
    # schema_context() sets a stand-in without the row: find the organisation by its schema.
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM public.tenants_organisation WHERE schema_name = %s", [schema])
        row = cursor.fetchone()
    if row is None:
        raise ValueError(f"no organisation owns schema {schema!r}")
    return row[0]


def _text(value, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def audit_record(
    *,
    action: str,
    organisation_id=CURRENT,
    target_type: str = "",
    target_id: uuid.UUID | str | int | None = None,
    target_label: str = "",
    before: dict | None = None,
    after: dict | None = None,
    facts: dict | None = None,
    actor: Actor | None = None,
) -> AuditEvent:
    """Record that `actor` (by default the request's, or `system`) did `action` to the
    target, in the organisation given (None: no organisation) or, by default, the one whose
    schema the connection is in. `before`/`after` hold the changed settings' old and new values; `facts` other
    details of the action. Callers never pass a secret in either."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to auditlog.actions")
    if organisation_id is CURRENT:
        organisation_id = _current_organisation_id()
    actor = actor or current_actor()
    changes: dict = dict(facts or {})
    if before is not None or after is not None:
        changes["before"] = before or {}
        changes["after"] = after or {}
    return AuditEvent.objects.create(
        organisation_id=organisation_id,
        actor_kind=actor.kind,
        actor_id=_text(actor.id, 64),
        actor_label=_text(actor.label, 300),
        action=action,
        target_type=target_type,
        target_id=_text(target_id, 64),
        target_label=_text(target_label, 300),
        changes=changes,
        ip=actor.ip,
        user_agent=_text(actor.user_agent, 255),
        request_id=_text(actor.request_id, 64),
    )


def changed_fields(before: dict, after: dict) -> tuple[dict, dict]:
    """The keys whose value differs, as (before, after) restricted to them."""
    keys = [key for key in after if before.get(key) != after.get(key)]
    return {key: before.get(key) for key in keys}, {key: after[key] for key in keys}


def audit_log_purge(*, now=None) -> int:
    """Delete the events older than AUDIT_LOG_RETENTION_DAYS, in batches; returns how many.
    The only deletion the table's trigger lets through: it sets the transaction-local
    flag the trigger looks for."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.AUDIT_LOG_RETENTION_DAYS)
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('nexus.audit_log_purge', 'on', true)")
            cursor.execute(
                "DELETE FROM public.auditlog_auditevent WHERE id IN ("
                " SELECT id FROM public.auditlog_auditevent WHERE created_at < %s ORDER BY id LIMIT %s)",
                [cutoff, PURGE_BATCH],
            )
            batch = cursor.rowcount
            # Called inside a caller's transaction, this block is a savepoint whose release
            # would keep the flag for the rest of that transaction: switch it off again.
            cursor.execute("SELECT set_config('nexus.audit_log_purge', 'off', true)")
        deleted += batch
        if batch < PURGE_BATCH:
            break
    log.info("audit_log.purged", deleted=deleted, retention_days=settings.AUDIT_LOG_RETENTION_DAYS)
    return deleted
