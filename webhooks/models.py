"""Webhook endpoints and their outbox (organisation schema): a delivery row per event per
endpoint, written in the transaction of the change that caused it; an attempt row per try."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=255, blank=True)
    event_types = ArrayField(models.CharField(max_length=64))
    active = models.BooleanField(default=True)
    # Encrypted (nexus.crypto); the plaintext is shown once, at creation or rotation.
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Health: when the current run of failed deliveries began (null after a success), the
    # latest attempt's error, and the latest success. Owners see these in the API and pages.
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    # The Standard Webhooks `webhook-id`: the same for every attempt and redelivery.
    id = models.CharField(primary_key=True, max_length=40, default=new_message_id, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    # Attempts allowed before the delivery fails; a redelivery raises it by a full cycle.
    attempt_limit = models.PositiveSmallIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due_idx")]

    def __str__(self) -> str:
        return f"{self.id} {self.event_type} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_unique")]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"


class NoticeKind(models.TextChoices):
    FAILING = "failing", "Failing"
    DISABLED = "disabled", "Disabled"


class WebhookNotice(models.Model):
    """A dashboard notice that an endpoint started failing or was disabled. Open until a
    success (or re-enabling) resolves it; shown until an admin dismisses it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=20, choices=NoticeKind.choices)
    message = models.CharField(max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)
    # A public-schema user id, not a foreign key: users live in another schema.
    dismissed_by_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A receiver that stays down is announced once, however many deliveries fail.
            models.UniqueConstraint(
                fields=["endpoint", "kind"],
                condition=models.Q(resolved_at__isnull=True),
                name="webhook_notice_one_open_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.endpoint_id}"
