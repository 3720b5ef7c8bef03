"""Every write to an organisation's credits.

Runs inside the organisation's schema (the request's or the task's). Each write locks the
single balance row first, so concurrent writers queue instead of racing, and appends one
ledger row; the database constraints (see billing.models) refuse anything that would
break the chain, overdraw the balance or charge/refund a job twice.

Audits spend through a reservation: `credits_reserve` moves credits from the available
balance to the reserved one, `credits_charge_reserved` spends from the audit's reservation
batch by batch and `credits_release` gives the rest back. What an audit has left reserved
is the sum of its rows' reserved_change, read under the balance lock, so two batches of one
audit cannot both spend its last credits.
"""

from __future__ import annotations

import uuid

import structlog
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q, Sum

from auditlog.context import actor_named
from auditlog.services import audit_record
from billing.metrics import CREDITS
from billing.models import CreditBalance, CreditTransaction, TransactionKind
from nexus.api.errors import Conflict, NotFound, PaymentRequired, ValidationFailed, field_error

log = structlog.get_logger(__name__)

MAX_SINGLE_AMOUNT = 1_000_000
# An audit's reservation is price times items, computed by the code rather than typed by an
# operator, so it has a bound of its own (100,000 items at up to 10,000 credits each).
MAX_AUDIT_AMOUNT = 1_000_000_000


class InsufficientCredits(PaymentRequired):
    """402 with details {balance, required}; a caller may add details of its own (an audit
    adds its price per item and its number of items)."""

    def __init__(self, *, balance: int, required: int, **extra: int):
        super().__init__(
            f"Not enough credits: this needs {required} and the balance is {balance}.",
            details={"balance": balance, "required": required, **extra},
        )


def _move_balance(amount: int, reserved_change: int) -> tuple[int, int, int] | None:
    """Add `amount` to the available balance and `reserved_change` to the reserved one,
    unless the available balance would go below zero. Returns the new (balance, reserved,
    sequence), or None when refused. The UPDATE takes the balance row's lock. Only the
    available balance is a condition: the services never take more from the reserved one
    than an audit holds, and if one did, the database's check would refuse it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_creditbalance SET balance = balance + %s, reserved = reserved + %s, "
            "last_sequence = COALESCE(last_sequence, 0) + 1, updated_at = now() "
            "WHERE id = 1 AND balance + %s >= 0 RETURNING balance, reserved, last_sequence",
            [amount, reserved_change, amount],
        )
        return cursor.fetchone()


def _append(
    *,
    kind: str,
    amount: int,
    actor_label: str,
    actor_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    purchase_id: uuid.UUID | None = None,
    audit_id: uuid.UUID | None = None,
    reserved_change: int = 0,
    reference: str = "",
    required: int | None = None,
) -> CreditTransaction:
    # Two statements: the conditional UPDATE (lock + move) and the ledger INSERT; the lock
    # is held from here to the commit, and the balance row's pointer to the ledger's last
    # row is checked at commit (deferred constraint).
    with transaction.atomic(savepoint=False):
        moved = _move_balance(amount, reserved_change)
        if moved is not None:
            new_balance, new_reserved, sequence = moved
            row = CreditTransaction.objects.create(
                sequence=sequence,
                previous_sequence=sequence - 1 if sequence > 1 else None,
                kind=kind,
                amount=amount,
                previous_balance=new_balance - amount,
                balance_after=new_balance,
                reserved_change=reserved_change,
                previous_reserved=new_reserved - reserved_change,
                reserved_after=new_reserved,
                job_id=job_id,
                purchase_id=purchase_id,
                audit_id=audit_id,
                reference=reference[:255],
                actor_id=actor_id,
                actor_label=actor_label[:255],
            )
    if moved is None:
        # Raised outside the block: nothing was written and the caller's transaction
        # stays usable.
        current = CreditBalance.objects.values_list("balance", flat=True).get(pk=1)
        raise InsufficientCredits(balance=current, required=required or -amount)
    transaction.on_commit(lambda: CREDITS.labels(kind=kind).inc(abs(amount or reserved_change)))
    log.info(
        "credits.transaction",
        kind=kind,
        amount=amount,
        balance_after=new_balance,
        reserved_change=reserved_change,
        reserved_after=new_reserved,
        job_id=str(job_id) if job_id else None,
        audit_id=str(audit_id) if audit_id else None,
    )
    return row


def _check_amount(amount: int, *, allow_negative: bool = False) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed("The amount must be a whole number of credits.")
    if amount == 0 or (amount < 0 and not allow_negative) or abs(amount) > MAX_SINGLE_AMOUNT:
        sign = "non-zero" if allow_negative else "positive"
        raise field_error(
            "amount",
            f"Invalid amount: {amount}.",
            message=f"The amount must be a {sign} whole number of at most {MAX_SINGLE_AMOUNT:,} credits.",
        )


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise field_error("reason", "This field is required.", message="A reason is required.")
    return reason


def credits_grant(
    *, amount: int, reason: str, actor_label: str, actor_id: uuid.UUID | None = None
) -> CreditTransaction:
    """Operator grant. Never reachable from the organisation's own API."""
    _check_amount(amount)
    reason = _check_reason(reason)
    with transaction.atomic():
        row = _append(
            kind=TransactionKind.GRANT,
            amount=amount,
            reference=reason,
            actor_label=actor_label,
            actor_id=actor_id,
        )
        audit_record(
            action="credits.granted",
            target_type="credits",
            target_id=row.pk,
            target_label=f"{amount:,} credits",
            facts={"amount": amount, "reason": reason, "balance_after": row.balance_after},
            actor=actor_named(actor_label, actor_id),
        )
    return row


def credits_purchase(
    *, amount: int, purchase_id: uuid.UUID, reference: str, actor_label: str
) -> CreditTransaction:
    """Credits bought. The database allows one purchase row per purchase."""
    _check_amount(amount)
    return _append(
        kind=TransactionKind.PURCHASE,
        amount=amount,
        purchase_id=purchase_id,
        reference=_check_reason(reference),
        actor_label=actor_label,
    )


def credits_adjust(
    *, amount: int, reason: str, actor_label: str, purchase_id: uuid.UUID | None = None
) -> CreditTransaction:
    _check_amount(amount, allow_negative=True)
    return _append(
        kind=TransactionKind.ADJUSTMENT,
        amount=amount,
        purchase_id=purchase_id,
        reference=_check_reason(reason),
        actor_label=actor_label,
    )


def credits_deduct(
    *, job_id: uuid.UUID, amount: int, actor_label: str, actor_id: uuid.UUID | None = None
) -> CreditTransaction:
    """Charge a job. InsufficientCredits (402) leaves nothing written. A second deduction
    for the same job is refused by the database and reported as Conflict; the enclosing
    transaction must then be rolled back (it is, when the Conflict leaves the request)."""
    _check_amount(amount)
    try:
        return _append(
            kind=TransactionKind.DEDUCTION,
            amount=-amount,
            job_id=job_id,
            reference=f"job {job_id}",
            actor_label=actor_label,
            actor_id=actor_id,
            required=amount,
        )
    except IntegrityError as exc:
        raise Conflict("This job has already been charged.") from exc


def credits_refund(*, job_id: uuid.UUID, reason: str) -> CreditTransaction:
    """Give back exactly what a job was charged. Idempotent: a job's existing refund is
    returned instead of writing a second one."""
    with transaction.atomic():
        # Lock first: two concurrent refunds of one job queue here, and the second sees
        # the first's row.
        CreditBalance.objects.select_for_update().get(pk=1)
        existing = CreditTransaction.objects.filter(job_id=job_id, kind=TransactionKind.REFUND).first()
        if existing is not None:
            return existing
        deduction = CreditTransaction.objects.filter(job_id=job_id, kind=TransactionKind.DEDUCTION).first()
        if deduction is None:
            raise NotFound("This job was never charged, so there is nothing to refund.")
        return _append(
            kind=TransactionKind.REFUND,
            amount=-deduction.amount,
            job_id=job_id,
            reference=(reason or f"refund of job {job_id}")[:255],
            actor_label="system",
        )


# --- Audits: reserve, charge from the reservation, release -----------------------------------


def _check_audit_amount(amount: int, *, allow_zero: bool) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed("The amount must be a whole number of credits.")
    if amount < 0 or (amount == 0 and not allow_zero) or amount > MAX_AUDIT_AMOUNT:
        least = "0" if allow_zero else "1"
        raise field_error(
            "amount",
            f"Invalid amount: {amount}.",
            message=f"The amount must be a whole number from {least} to {MAX_AUDIT_AMOUNT:,} credits.",
        )


def _lock_balance() -> None:
    """Take the balance row's lock before reading what an audit holds: every other writer
    queues behind it, so what is read stays true until the commit."""
    CreditBalance.objects.select_for_update().values_list("pk", flat=True).get(pk=1)


def _audit_holding(audit_id: uuid.UUID) -> tuple[int, bool, bool]:
    """What the audit has left reserved (its reservation minus its charges and release),
    and whether it has a reservation and a release. Call with the balance row locked."""
    totals = CreditTransaction.objects.filter(audit_id=audit_id).aggregate(
        left=Sum("reserved_change"),
        reservations=Count("kind", filter=Q(kind=TransactionKind.RESERVATION)),
        releases=Count("kind", filter=Q(kind=TransactionKind.RELEASE)),
    )
    return totals["left"] or 0, totals["reservations"] > 0, totals["releases"] > 0


def credits_reserve(
    *, audit_id: uuid.UUID, amount: int, actor_label: str, actor_id: uuid.UUID | None = None
) -> CreditTransaction:
    """Move `amount` credits from the available balance to the reserved one for an audit
    (the audit is created in the same transaction). InsufficientCredits (402, details
    {balance, required}) when the available balance is short; Conflict when the audit
    already has its reservation. Either way nothing is written and the caller's transaction
    stays usable."""
    _check_audit_amount(amount, allow_zero=False)
    try:
        with transaction.atomic():
            _lock_balance()
            if _audit_holding(audit_id)[1]:
                raise Conflict("This audit has already reserved its credits.")
            return _append(
                kind=TransactionKind.RESERVATION,
                amount=-amount,
                reserved_change=amount,
                audit_id=audit_id,
                reference=f"reservation for audit {audit_id}",
                actor_label=actor_label,
                actor_id=actor_id,
                required=amount,
            )
    except IntegrityError as exc:  # the unique index: a reservation committed meanwhile
        raise Conflict("This audit has already reserved its credits.") from exc


def credits_charge_reserved(
    *, audit_id: uuid.UUID, amount: int, actor_label: str, reference: str = ""
) -> CreditTransaction | None:
    """Spend `amount` of the audit's reserved credits (a batch's evaluated items), in the
    transaction that writes the batch's verdicts. The available balance does not move.
    Conflict (details {reserved, required}) when the audit has less than `amount` left
    reserved: its reservation minus its charges and release so far. 0 writes nothing
    (a batch in which no item was evaluated) and returns None."""
    _check_audit_amount(amount, allow_zero=True)
    if amount == 0:
        return None
    with transaction.atomic():
        _lock_balance()
        left, _, _ = _audit_holding(audit_id)
        if amount > left:
            raise Conflict(
                f"This audit has {left} credits left reserved and cannot be charged {amount}.",
                details={"reserved": left, "required": amount},
            )
        return _append(
            kind=TransactionKind.AUDIT_CHARGE,
            amount=0,
            reserved_change=-amount,
            audit_id=audit_id,
            reference=(reference or f"audit {audit_id}")[:255],
            actor_label=actor_label,
        )


def credits_release(
    *, audit_id: uuid.UUID, amount: int, actor_label: str, reason: str
) -> CreditTransaction | None:
    """Give `amount` of the audit's reserved credits back to the available balance (the
    items it will never evaluate), once per audit. Conflict when the audit has already
    released, or has less than `amount` left reserved. 0 writes nothing and returns None."""
    _check_audit_amount(amount, allow_zero=True)
    if amount == 0:
        return None
    try:
        with transaction.atomic():
            _lock_balance()
            left, _, released = _audit_holding(audit_id)
            if released:
                raise Conflict("This audit's credits have already been released.")
            if amount > left:
                raise Conflict(
                    f"This audit has {left} credits left reserved and cannot release {amount}.",
                    details={"reserved": left, "required": amount},
                )
            return _append(
                kind=TransactionKind.RELEASE,
                amount=amount,
                reserved_change=-amount,
                audit_id=audit_id,
                reference=(reason or f"release for audit {audit_id}")[:255],
                actor_label=actor_label,
            )
    except IntegrityError as exc:  # the unique index: a release committed meanwhile
        raise Conflict("This audit's credits have already been released.") from exc
