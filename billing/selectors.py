"""Reads of billing: the credit ledger and purchases (organisation schema), the credit packs
on sale (public schema)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import TypedDict

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import CreditBalance, CreditTransaction, Purchase, TransactionKind
from billing.public.models import CreditPack


def credits_balance() -> int:
    """The available balance: what jobs and new audits can spend."""
    row = CreditBalance.objects.filter(pk=1).values_list("balance", flat=True).first()
    return row or 0


def credits_reserved() -> int:
    """The credits held by the organisation's audits (reserved, not yet charged or
    released)."""
    row = CreditBalance.objects.filter(pk=1).values_list("reserved", flat=True).first()
    return row or 0


def credits_balances() -> tuple[int, int]:
    """(available, reserved) read together, in one query."""
    row = CreditBalance.objects.filter(pk=1).values_list("balance", "reserved").first()
    return row or (0, 0)


class AuditCredits(TypedDict):
    reserved: int
    charged: int
    released: int


def audit_credits(audit_id: uuid.UUID) -> AuditCredits:
    """An audit's credits, from the ledger: its reservation, what was charged from it and
    what was released. Reserved minus charged minus released is what it still holds."""
    totals = CreditTransaction.objects.filter(audit_id=audit_id).aggregate(
        reserved=Sum("reserved_change", filter=Q(kind=TransactionKind.RESERVATION)),
        charged=Sum(-F("reserved_change"), filter=Q(kind=TransactionKind.AUDIT_CHARGE)),
        released=Sum(-F("reserved_change"), filter=Q(kind=TransactionKind.RELEASE)),
    )
    return AuditCredits(
        reserved=totals["reserved"] or 0, charged=totals["charged"] or 0, released=totals["released"] or 0
    )


def credits_recent(*, limit: int = 10) -> list[CreditTransaction]:
    return list(CreditTransaction.objects.order_by("-sequence")[:limit])


def credits_transactions(
    *, kinds: list[str] | None = None, start: datetime | None = None, end: datetime | None = None
) -> QuerySet[CreditTransaction]:
    rows = CreditTransaction.objects.all()
    if kinds:
        rows = rows.filter(kind__in=kinds)
    if start:
        rows = rows.filter(created_at__gte=start)
    if end:
        rows = rows.filter(created_at__lte=end)
    return rows


def window_start(days: int) -> datetime:
    """Midnight UTC at the start of a window of `days` days ending today."""
    today = timezone.now().astimezone(timezone.get_default_timezone()).date()
    first_day = today - timedelta(days=days - 1)
    return datetime.combine(first_day, datetime.min.time(), tzinfo=timezone.get_default_timezone())


SPENDING_KINDS = [TransactionKind.DEDUCTION, TransactionKind.REFUND, TransactionKind.AUDIT_CHARGE]


def credits_spent_per_day(*, days: int) -> list[tuple[date, int]]:
    """Credits spent on each of the last `days` days (UTC, today included, days without
    spending as 0). Spent = deductions minus refunds plus audit charges written that day;
    a reservation or a release is not spending (the credits are only set aside or given
    back). Deductions and refunds move `amount` only, audit charges `reserved_change`
    only, so their sum is the day's spending."""
    start = window_start(days)
    totals = {
        row["day"]: row["total"]
        for row in CreditTransaction.objects.filter(created_at__gte=start, kind__in=SPENDING_KINDS)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(total=Sum(F("amount") + F("reserved_change")))
    }
    first_day = start.date()
    return [
        (first_day + timedelta(days=offset), -(totals.get(first_day + timedelta(days=offset)) or 0))
        for offset in range(days)
    ]


def credits_ledger_sum() -> int:
    """The sum of the ledger's amounts: always the available balance."""
    return CreditTransaction.objects.aggregate(total=Sum("amount"))["total"] or 0


def credits_ledger_reserved_sum() -> int:
    """The sum of the ledger's reserved changes: always the reserved balance."""
    return CreditTransaction.objects.aggregate(total=Sum("reserved_change"))["total"] or 0


def credit_packs_on_sale() -> QuerySet[CreditPack]:
    return CreditPack.objects.filter(active=True)


def purchase_list(*, statuses: list[str] | None = None) -> QuerySet[Purchase]:
    """The organisation's purchases (unordered: the caller sorts), optionally by status."""
    rows = Purchase.objects.all()
    if statuses:
        rows = rows.filter(status__in=statuses)
    return rows


def purchases_recent(*, limit: int = 50) -> list[Purchase]:
    return list(Purchase.objects.order_by("-created_at")[:limit])
