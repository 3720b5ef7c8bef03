"""AI jobs and their timelines (organisation schema). Status changes only through
jobs.services; the model holds data, not rules."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class JobType(models.TextChoices):
    SUMMARIZE = "summarize", "Summarise"
    ANALYZE = "analyze", "Analyse"


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


FINISHED_STATUSES = [JobStatus.COMPLETED, JobStatus.FAILED]


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # A public-schema user; users are never deleted (they are deactivated).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Who submitted it: `user:<email>`, or `key:<name>` for an API key (acting for `user`,
    # its creator). Empty for jobs from before keys existed.
    actor = models.CharField(max_length=300, blank=True)
    job_type = models.CharField(max_length=20, choices=JobType.choices)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.PENDING)
    input = models.JSONField()
    output = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    cost = models.PositiveIntegerField()
    attempt_count = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100, blank=True)
    # Answered from the organisation's result cache: completed at creation, cost 0.
    cache_hit = models.BooleanField(default=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When the broker accepted the message for the job's next attempt; null while it is not
    # known to be queued (the send failed, or a retry waits for its due time). The frequent
    # sweep sends pending jobs that are due and not queued, so nothing waits on a lost send.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # The Celery worker running the current attempt; its heartbeat (tenants.WorkerHeartbeat)
    # stopping means the attempt died with it.
    worker = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="job_status_due_idx"),
            models.Index(fields=["status", "started_at"], name="job_status_started_idx"),
            models.Index(fields=["job_type", "created_at"], name="job_type_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(attempt_count__lte=models.F("max_attempts")),
                name="job_attempts_within_limit",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=JobStatus.COMPLETED) | models.Q(completed_at__isnull=False),
                name="job_completed_has_timestamp",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=JobStatus.FAILED) | models.Q(failed_at__isnull=False),
                name="job_failed_has_timestamp",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.id} ({self.status})"

    @property
    def text(self) -> str:
        return self.input.get("text", "")


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    STARTED = "started", "Attempt started"
    ATTEMPT_FAILED = "attempt_failed", "Attempt failed"
    RETRY_SCHEDULED = "retry_scheduled", "Retry scheduled"
    REQUEUED = "requeued", "Re-queued by the sweep"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"


class JobEvent(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    attempt = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.job_id} {self.kind} #{self.attempt}"
