"""Every write to an organisation's credits.

Runs inside the organisation's schema (the request's or the task's). Each write locks the
single balance row first, so concurrent writers queue instead of racing, and appends one
ledger row; the database constraints (see billing.models) refuse anything that would
break the chain, overdraw the balance or charge/refund a job twice.
"""

from __future__ import annotations

import uuid

import structlog
from django.db import IntegrityError, connection, transaction

from billing.metrics import CREDITS
from billing.models import CreditBalance, CreditTransaction, TransactionKind
from nexus.api.errors import Conflict, NotFound, PaymentRequired, ValidationFailed, field_error

log = structlog.get_logger(__name__)

MAX_SINGLE_AMOUNT = 1_000_000


class InsufficientCredits(PaymentRequired):
    def __init__(self, *, balance: int, required: int):
        super().__init__(
            f"Not enough credits: this needs {required} and the balance is {balance}.",
            details={"balance": balance, "required": required},
        )


def _move_balance(amount: int) -> tuple[int, int] | None:
    """Add `amount` to the balance unless that would take it below zero. Returns the new
    (balance, sequence), or None when refused. The UPDATE takes the balance row's lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_creditbalance SET balance = balance + %s, "
            "last_sequence = COALESCE(last_sequence, 0) + 1, updated_at = now() "
            "WHERE id = 1 AND balance + %s >= 0 RETURNING balance, last_sequence",
            [amount, amount],
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
    reference: str = "",
    required: int | None = None,
) -> CreditTransaction:
    # Two statements: the conditional UPDATE (lock + move) and the ledger INSERT; the lock
    # is held from here to the commit, and the balance row's pointer to the ledger's last
    # row is checked at commit (deferred constraint).
    with transaction.atomic(savepoint=False):
        moved = _move_balance(amount)
        if moved is not None:
            new_balance, sequence = moved
            row = CreditTransaction.objects.create(
                sequence=sequence,
                previous_sequence=sequence - 1 if sequence > 1 else None,
                kind=kind,
                amount=amount,
                previous_balance=new_balance - amount,
                balance_after=new_balance,
                job_id=job_id,
                purchase_id=purchase_id,
                reference=reference[:255],
                actor_id=actor_id,
                actor_label=actor_label[:255],
            )
    if moved is None:
        # Raised outside the block: nothing was written and the caller's transaction
        # stays usable.
        current = CreditBalance.objects.values_list("balance", flat=True).get(pk=1)
        raise InsufficientCredits(balance=current, required=required or -amount)
    transaction.on_commit(lambda: CREDITS.labels(kind=kind).inc(abs(amount)))
    log.info(
        "credits.transaction",
        kind=kind,
        amount=amount,
        balance_after=new_balance,
        job_id=str(job_id) if job_id else None,
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
    return _append(
        kind=TransactionKind.GRANT,
        amount=amount,
        reference=_check_reason(reason),
        actor_label=actor_label,
        actor_id=actor_id,
    )


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
