"""The credit ledger of one organisation (lives in its schema).

The database keeps the invariants, not the code: balances never go below zero, each job
has at most one deduction and one refund, and the ledger is a chain — every row's
balance_after is the previous row's plus its amount (a composite foreign key ties each row
to its predecessor, see migration 0002), and the balance row points at the chain's last
row — the newest one, checked at commit by a trigger (migration 0004), which also refuses
any UPDATE or DELETE of a ledger row. So the balance always equals the sum of the ledger.

Beside the available balance, the ledger carries the credits reserved for audits: every
row's reserved_after is the previous row's plus its reserved_change, chained and pointed at
the same way (migration 0005), so `reserved` always equals the sum of reserved_change. An
audit reserves once, is charged from its reservation batch by batch and releases once.
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
    # An audit's credits: moved from available to reserved when it starts, charged from
    # the reservation batch by batch, the rest moved back when it ends.
    RESERVATION = "reservation", "Reservation"
    AUDIT_CHARGE = "audit_charge", "Audit charge"
    RELEASE = "release", "Release"


CREDIT_KINDS = [TransactionKind.GRANT, TransactionKind.PURCHASE, TransactionKind.REFUND]
# Kinds that only move the available balance.
AVAILABLE_ONLY_KINDS = [*CREDIT_KINDS, TransactionKind.DEDUCTION, TransactionKind.ADJUSTMENT]
AUDIT_KINDS = [TransactionKind.RESERVATION, TransactionKind.AUDIT_CHARGE, TransactionKind.RELEASE]


class CreditTransaction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    sequence = models.PositiveBigIntegerField(unique=True)
    previous_sequence = models.PositiveBigIntegerField(null=True, unique=True)
    kind = models.CharField(max_length=20, choices=TransactionKind.choices)
    amount = models.BigIntegerField()
    previous_balance = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    # The reserved balance's chain, beside the available one. db_default: rows written
    # before reservations existed (and any INSERT naming none of them) reserve nothing.
    reserved_change = models.BigIntegerField(db_default=0)
    previous_reserved = models.BigIntegerField(db_default=0)
    reserved_after = models.BigIntegerField(db_default=0)
    job_id = models.UUIDField(null=True, blank=True)
    audit_id = models.UUIDField(null=True, blank=True)
    # The purchase a `purchase` row (or a refund's adjustment) belongs to.
    purchase_id = models.UUIDField(null=True, blank=True)
    reference = models.CharField(max_length=255, blank=True)
    actor_id = models.UUIDField(null=True, blank=True)
    actor_label = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-sequence"]
        indexes = [
            models.Index(fields=["kind", "created_at"], name="credit_kind_created_idx"),
            # An audit's rows, summed under the balance lock before each charge and release
            # (reserved_change included: the sum is read from the index alone).
            models.Index(
                fields=["audit_id", "kind"],
                include=["reserved_change"],
                condition=Q(audit_id__isnull=False),
                name="credit_audit_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="credit_balance_after_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved_after__gte=0), name="credit_reserved_after_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved_after=F("previous_reserved") + F("reserved_change")),
                name="credit_reserved_after_is_previous_plus_change",
            ),
            # The first row starts from nothing reserved (its balance side is in
            # credit_chain_is_contiguous); later rows are tied to their predecessor's
            # reserved_after by a foreign key (migration 0005).
            models.CheckConstraint(
                condition=Q(previous_sequence__isnull=False) | Q(previous_reserved=0),
                name="credit_chain_reserved_starts_at_zero",
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
                    | Q(kind=TransactionKind.RESERVATION, amount__lt=0)
                    | Q(kind=TransactionKind.AUDIT_CHARGE, amount=0)
                    | Q(kind=TransactionKind.RELEASE, amount__gt=0)
                ),
                name="credit_amount_sign_matches_kind",
            ),
            # A reservation moves credits from available to reserved and a release moves
            # them back (same size, opposite signs); a charge spends reserved credits only.
            models.CheckConstraint(
                condition=(
                    Q(kind__in=AVAILABLE_ONLY_KINDS, reserved_change=0)
                    | Q(
                        kind__in=[TransactionKind.RESERVATION, TransactionKind.RELEASE],
                        reserved_change=-F("amount"),
                    )
                    | Q(kind=TransactionKind.AUDIT_CHARGE, reserved_change__lt=0)
                ),
                name="credit_reserved_change_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=AUDIT_KINDS, audit_id__isnull=False) | ~Q(kind__in=AUDIT_KINDS),
                name="credit_audit_rows_name_their_audit",
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
            models.UniqueConstraint(
                fields=["audit_id"],
                condition=Q(kind=TransactionKind.RESERVATION),
                name="credit_one_reservation_per_audit",
            ),
            models.UniqueConstraint(
                fields=["audit_id"],
                condition=Q(kind=TransactionKind.RELEASE),
                name="credit_one_release_per_audit",
            ),
            # Targets of the chain's foreign keys (migrations 0002 and 0005).
            models.UniqueConstraint(fields=["sequence", "balance_after"], name="credit_sequence_balance_key"),
            models.UniqueConstraint(
                fields=["sequence", "reserved_after"], name="credit_sequence_reserved_key"
            ),
        ]

    def __str__(self) -> str:
        text = f"#{self.sequence} {self.kind} {self.amount:+d} -> {self.balance_after}"
        if self.reserved_change:
            text += f" (reserved {self.reserved_change:+d} -> {self.reserved_after})"
        return text


class CreditBalance(models.Model):
    """The single balance row of the organisation (id is always 1). `balance` is what is
    available to spend; `reserved` is held for audits that are running."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    balance = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(db_default=0)
    last_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="credit_balance_single_row"),
            models.CheckConstraint(condition=Q(balance__gte=0), name="credit_balance_not_negative"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="credit_reserved_not_negative"),
            models.CheckConstraint(
                condition=Q(last_sequence__isnull=False) | Q(balance=0),
                name="credit_balance_zero_without_ledger",
            ),
            models.CheckConstraint(
                condition=Q(last_sequence__isnull=False) | Q(reserved=0),
                name="credit_reserved_zero_without_ledger",
            ),
        ]

    def __str__(self) -> str:
        if self.reserved:
            return f"{self.balance} credits ({self.reserved} reserved)"
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
