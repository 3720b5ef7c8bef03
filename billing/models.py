"""The credit ledger of one organisation (lives in its schema).

The database keeps the invariants, not the code: balances never go below zero, each job
has at most one deduction and one refund, and the ledger is a chain — every row's
balance_after is the previous row's plus its amount (a composite foreign key ties each row
to its predecessor, see migration 0002), and the balance row points at the chain's last
row — the newest one, checked at commit by a trigger (migration 0004), which also refuses
any UPDATE or DELETE of a ledger row. So the balance always equals the sum of the ledger.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q


class TransactionKind(models.TextChoices):
    GRANT = "grant", "Grant"
    PURCHASE = "purchase", "Purchase"
    DEDUCTION = "deduction", "Deduction"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"


CREDIT_KINDS = [TransactionKind.GRANT, TransactionKind.PURCHASE, TransactionKind.REFUND]


class CreditTransaction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    sequence = models.PositiveBigIntegerField(unique=True)
    previous_sequence = models.PositiveBigIntegerField(null=True, unique=True)
    kind = models.CharField(max_length=20, choices=TransactionKind.choices)
    amount = models.BigIntegerField()
    previous_balance = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    job_id = models.UUIDField(null=True, blank=True)
    # The purchase a `purchase` row (or a refund's adjustment) belongs to.
    purchase_id = models.UUIDField(null=True, blank=True)
    reference = models.CharField(max_length=255, blank=True)
    actor_id = models.UUIDField(null=True, blank=True)
    actor_label = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-sequence"]
        indexes = [models.Index(fields=["kind", "created_at"], name="credit_kind_created_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="credit_balance_after_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(balance_after=F("previous_balance") + F("amount")),
                name="credit_balance_after_is_previous_plus_amount",
            ),
            models.CheckConstraint(
                condition=(
                    Q(previous_sequence__isnull=True, sequence=1, previous_balance=0)
                    | Q(previous_sequence=F("sequence") - 1)
                ),
                name="credit_chain_is_contiguous",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind__in=CREDIT_KINDS, amount__gt=0)
                    | Q(kind=TransactionKind.DEDUCTION, amount__lt=0)
                    | (Q(kind=TransactionKind.ADJUSTMENT) & ~Q(amount=0))
                ),
                name="credit_amount_sign_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(
                    kind__in=[TransactionKind.DEDUCTION, TransactionKind.REFUND], job_id__isnull=False
                )
                | ~Q(kind__in=[TransactionKind.DEDUCTION, TransactionKind.REFUND]),
                name="credit_job_rows_name_their_job",
            ),
            models.UniqueConstraint(
                fields=["job_id"],
                condition=Q(kind=TransactionKind.DEDUCTION),
                name="credit_one_deduction_per_job",
            ),
            models.UniqueConstraint(
                fields=["job_id"],
                condition=Q(kind=TransactionKind.REFUND),
                name="credit_one_refund_per_job",
            ),
            models.UniqueConstraint(
                fields=["purchase_id"],
                condition=Q(kind=TransactionKind.PURCHASE),
                name="credit_one_purchase_row_per_purchase",
            ),
            # Target of the chain's foreign keys (migration 0002).
            models.UniqueConstraint(fields=["sequence", "balance_after"], name="credit_sequence_balance_key"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.kind} {self.amount:+d} -> {self.balance_after}"


class CreditBalance(models.Model):
    """The single balance row of the organisation (id is always 1)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    balance = models.BigIntegerField(default=0)
    last_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="credit_balance_single_row"),
            models.CheckConstraint(condition=Q(balance__gte=0), name="credit_balance_not_negative"),
            models.CheckConstraint(
                condition=Q(last_sequence__isnull=False) | Q(balance=0),
                name="credit_balance_zero_without_ledger",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.balance} credits"


class PurchaseStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETED = "completed", "Completed"
    EXPIRED = "expired", "Expired"
    REFUNDED = "refunded", "Refunded"


# The only moves a purchase can make; anything else is refused (and logged).
PURCHASE_TRANSITIONS: dict[str, set[str]] = {
    PurchaseStatus.PENDING: {PurchaseStatus.COMPLETED, PurchaseStatus.EXPIRED},
    PurchaseStatus.COMPLETED: {PurchaseStatus.REFUNDED},
    PurchaseStatus.EXPIRED: set(),
    PurchaseStatus.REFUNDED: set(),
}


class Purchase(models.Model):
    """A credit pack bought through Stripe Checkout (organisation schema). The pack's
    details are copied: later price changes do not rewrite what was bought."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pack_id = models.UUIDField()
    pack_name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=PurchaseStatus.choices, default=PurchaseStatus.PENDING)
    stripe_session_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    checkout_url = models.URLField(max_length=2048, blank=True)
    created_by_id = models.UUIDField()
    credits_reversed = models.PositiveIntegerField(default=0)
    refund_shortfall = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status=PurchaseStatus.COMPLETED) | Q(completed_at__isnull=False),
                name="purchase_completed_has_timestamp",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pack_name} ({self.status})"
