"""Batch audits and their items (organisation schema). An audit is created with all its
items; status and counters change only through audits.services, and an item's verdict is
written once, in the transaction that charges for it (docs/specs/audits.md)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class AuditStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (AuditStatus.COMPLETED, AuditStatus.FAILED, AuditStatus.CANCELLED)


class InputKind(models.TextChoices):
    X_ARCHIVE = "x_archive", "X archive"
    CSV = "csv", "CSV"
    RECORDS = "records", "Data source records"


class ItemStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    EVALUATED = "evaluated", "Evaluated"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Audit(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=20, choices=AuditStatus.choices, default=AuditStatus.QUEUED)
    input_kind = models.CharField(max_length=20, choices=InputKind.choices)
    input_name = models.CharField(max_length=255, blank=True)
    criteria = models.TextField()
    keywords = models.JSONField(default=list)
    categories = models.JSONField(default=list)
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    batch_size = models.PositiveSmallIntegerField()
    price_per_item = models.PositiveIntegerField()
    total = models.PositiveIntegerField()
    done = models.PositiveIntegerField(default=0)  # evaluated + failed
    flagged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled_items = models.PositiveIntegerField(default=0)
    skipped_input = models.PositiveIntegerField(default=0)  # retweets and replies left out
    credits_reserved = models.PositiveBigIntegerField(default=0)
    credits_charged = models.PositiveBigIntegerField(default=0)
    credits_released = models.PositiveBigIntegerField(default=0)
    # A public-schema user; users are never deleted (they are deactivated).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    actor_label = models.CharField(max_length=255)
    error = models.TextField(blank=True)
    # The finish times and sizes of the last batches: items per minute and the ETA.
    rate_window = models.JSONField(default=list)
    # Batches that failed every item, in a row: the provider refuses everything.
    failed_batches_in_row = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The last batch committed (or the audit queued): the sweep re-sends the messages of an
    # audit with pending items and no batch for a while.
    last_batch_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(done__lte=models.F("total")), name="audit_done_within_total"),
            models.CheckConstraint(
                condition=Q(credits_charged__lte=models.F("credits_reserved")),
                name="audit_charged_within_reserved",
            ),
        ]

    def __str__(self) -> str:
        return f"Audit {self.pk} ({self.status})"


class AuditItem(models.Model):
    id = models.BigAutoField(primary_key=True)
    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="items")
    seq = models.PositiveIntegerField()  # input order
    external_id = models.CharField(max_length=255)
    text = models.TextField()
    url = models.CharField(max_length=2048, blank=True)
    created_at_source = models.DateTimeField(null=True, blank=True)
    is_retweet = models.BooleanField(default=False)
    is_reply = models.BooleanField(default=False)
    truncated = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    flagged = models.BooleanField(null=True, blank=True)
    reason = models.TextField(blank=True)
    categories = models.JSONField(default=list)
    confidence = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["audit", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["audit", "seq"], name="audit_item_seq_unique"),
            models.UniqueConstraint(fields=["audit", "external_id"], name="audit_item_external_id_unique"),
            # A verdict belongs to an evaluated item, and an evaluated item has one.
            models.CheckConstraint(
                condition=(Q(status="evaluated") & Q(flagged__isnull=False))
                | (~Q(status="evaluated") & Q(flagged__isnull=True)),
                name="audit_item_verdict_matches_status",
            ),
        ]
        indexes = [
            models.Index(fields=["audit", "status", "seq"], name="audit_item_status_seq_idx"),
            models.Index(
                fields=["audit", "flagged"], name="audit_item_flagged_idx", condition=Q(flagged=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.audit_id} #{self.seq}"
