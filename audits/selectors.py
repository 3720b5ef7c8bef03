"""Reads of audits (organisation schema): audits, their progress, their items."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from audits.models import Audit, AuditItem, AuditStatus, ItemStatus
from nexus.access import access_by_id

# Below this many items in the rate window, no rate (and no ETA) is claimed.
MIN_RATE_ITEMS = 1


def audit_get(*, audit_id) -> Audit:
    return access_by_id(Audit.objects.all(), audit_id, not_found="No such audit.")


def audit_list() -> QuerySet[Audit]:
    return Audit.objects.order_by("-created_at", "pk")


@dataclass(frozen=True)
class Progress:
    items_per_minute: float | None
    eta_seconds: int | None
    percent: float


def audit_progress(audit: Audit) -> Progress:
    """Items per minute over the last batches (audits.services keeps their finish times and
    sizes), and the time the pending items would take at that rate while the audit runs."""
    percent = round(100 * audit.done / audit.total, 1) if audit.total else 100.0
    window = audit.rate_window or []
    rate = None
    if len(window) >= 2:
        # The first batch's finish starts the window: the items counted are those after it.
        elapsed = window[-1][0] - window[0][0]
        items = sum(size for _, size in window[1:])
        if elapsed > 0 and items >= MIN_RATE_ITEMS:
            rate = items / elapsed * 60
    elif len(window) == 1 and audit.started_at is not None:
        elapsed = window[0][0] - audit.started_at.timestamp()
        if elapsed > 0:
            rate = window[0][1] / elapsed * 60
    eta = None
    if rate and audit.status in (AuditStatus.QUEUED, AuditStatus.RUNNING):
        remaining = audit.total - audit.done - audit.cancelled_items
        eta = max(0, round(remaining / rate * 60))
    return Progress(items_per_minute=round(rate, 1) if rate else None, eta_seconds=eta, percent=percent)


def item_list(
    *, audit: Audit, flagged: bool | None = None, failed: bool | None = None, search: str = ""
) -> QuerySet[AuditItem]:
    """The audit's items in input order; `flagged`/`failed` narrow to verdicts or failures
    (both true: either), `search` to items whose text or id contains it."""
    items = AuditItem.objects.filter(audit=audit)
    wanted = Q()
    if flagged:
        wanted |= Q(flagged=True)
    if failed:
        wanted |= Q(status=ItemStatus.FAILED)
    if flagged is False:
        items = items.exclude(flagged=True)
    if failed is False:
        items = items.exclude(status=ItemStatus.FAILED)
    if wanted:
        items = items.filter(wanted)
    if search:
        items = items.filter(Q(text__icontains=search) | Q(external_id__icontains=search))
    return items.order_by("seq")
