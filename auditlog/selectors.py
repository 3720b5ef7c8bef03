"""Reads of the audit log. Every read of an organisation's events takes the organisation's
id: there is no path from one organisation to another's events."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from auditlog.models import AuditEvent


def audit_events(
    *,
    organisation_id: uuid.UUID,
    actor: str = "",
    actions: list[str] | None = None,
    target: str = "",
) -> QuerySet[AuditEvent]:
    """The organisation's events, newest first. `actor` matches the actor's label or id;
    `actions` names actions exactly, or a family with a trailing `.*` (`member.*`);
    `target` matches the target's type or id."""
    if organisation_id is None:
        raise ValueError("audit_events needs an organisation")
    events = AuditEvent.objects.filter(organisation_id=organisation_id)
    if actor:
        events = events.filter(Q(actor_label=actor) | Q(actor_id=actor))
    if actions:
        wanted = Q()
        for action in actions:
            if action.endswith(".*"):
                wanted |= Q(action__startswith=action[:-1])
            else:
                wanted |= Q(action=action)
        events = events.filter(wanted)
    if target:
        events = events.filter(Q(target_type=target) | Q(target_id=target))
    return events.order_by("-created_at", "-id")
