"""Data sources, their runs and checkpoints, raw items per kind, and the unified records
(organisation schema). Raw first, unified second; a checkpoint per source commits with the
batch it covers."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models


class SourceKind(models.TextChoices):
    API = "api", "HTTP JSON API"
    CSV = "csv", "CSV file"
    RSS = "rss", "RSS/Atom feed"


class DataSource(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=SourceKind.choices)
    config = models.JSONField(default=dict)
    # Encrypted (nexus.crypto); never returned by the API or written to logs.
    api_key_encrypted = models.TextField(blank=True)
    field_mapping = models.JSONField(default=dict)
    required_fields = ArrayField(models.CharField(max_length=50), default=list)
    schedule_minutes = models.PositiveIntegerField(default=60)
    enabled = models.BooleanField(default=True)
    requests_per_second = models.FloatField(default=5.0)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The uploaded file (CSV/RSS), by its name in the default storage: always under
    # "<org schema>/etl/<source id>/", never chosen by the organisation. Blank: none.
    file_key = models.CharField(max_length=500, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    file_size = models.BigIntegerField(null=True, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    file_uploaded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Checkpoint(models.Model):
    source = models.OneToOneField(DataSource, on_delete=models.CASCADE, related_name="checkpoint")
    cursor = models.JSONField(default=dict)
    # Incoming field names seen so far: a field is reported as new drift only once.
    known_fields = ArrayField(models.CharField(max_length=255), default=list)
    run = models.ForeignKey("EtlRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.source_id}: {self.cursor}"


class RunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"
    RESUME = "resume", "Resume"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class EtlRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=RunTrigger.choices)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    fetched = models.PositiveIntegerField(default=0)
    inserted = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    quarantined = models.PositiveIntegerField(default=0)
    drift_warnings = models.PositiveIntegerField(default=0)
    checkpoint_before = models.JSONField(default=dict)
    checkpoint_after = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    # A worker processes a run in slices; between two it is queued again.
    slices = models.PositiveIntegerField(default=0)
    slice_queued_at = models.DateTimeField(null=True, blank=True)
    # The worker running its current slice (see tenants.WorkerHeartbeat): when the run is
    # found dead, its last heartbeat is when the run stopped.
    worker = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.source_id} {self.started_at:%Y-%m-%d %H:%M} {self.status}"


class RawItem(models.Model):
    # No single-column indexes: the unique (source, content_hash) index serves lookups by
    # source (the hash covers the whole payload, id included), and every extra index slows
    # bulk ingestion.
    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="+", db_index=False)
    # Which run fetched it. Not a database constraint: checking it would cost a lookup per
    # row at every commit, and runs are only ever deleted together with their source.
    run = models.ForeignKey(
        EtlRun, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    external_id = models.CharField(max_length=255)
    content_hash = models.CharField(max_length=40)
    payload = models.JSONField()
    fetched_at = models.DateTimeField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.source_id}:{self.external_id}@{self.content_hash[:8]}"


class RawApiRecord(RawItem):
    class Meta:
        db_table = "raw_api_records"
        constraints = [
            models.UniqueConstraint(fields=["source", "content_hash"], name="raw_api_unique"),
        ]


class RawCsvRecord(RawItem):
    class Meta:
        db_table = "raw_csv_records"
        constraints = [
            models.UniqueConstraint(fields=["source", "content_hash"], name="raw_csv_unique"),
        ]


class RawRssItem(RawItem):
    class Meta:
        db_table = "raw_rss_items"
        constraints = [
            models.UniqueConstraint(fields=["source", "content_hash"], name="raw_rss_unique"),
        ]


RAW_MODELS = {SourceKind.API: RawApiRecord, SourceKind.CSV: RawCsvRecord, SourceKind.RSS: RawRssItem}


class Record(models.Model):
    # Lookups by source use the unique (source, external_id) index.
    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="records", db_index=False)
    external_id = models.CharField(max_length=255)
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)
    url = models.TextField(blank=True)
    author = models.CharField(max_length=255, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    tags = ArrayField(models.CharField(max_length=100), default=list)
    extra = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=40)
    # Not database constraints either (see RawItem.run).
    first_seen_run = models.ForeignKey(
        EtlRun, on_delete=models.SET_NULL, null=True, related_name="+", db_index=False, db_constraint=False
    )
    last_updated_run = models.ForeignKey(
        EtlRun, on_delete=models.SET_NULL, null=True, related_name="+", db_index=False, db_constraint=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "records"
        ordering = ["-published_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="record_source_external_id")
        ]
        indexes = [models.Index(fields=["published_at"], name="record_published_idx")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.external_id}"


class QuarantinedItem(models.Model):
    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(EtlRun, on_delete=models.CASCADE, related_name="quarantine")
    external_id = models.CharField(max_length=255, blank=True)
    # Of the raw item: the same item rejected again by a later run is not stored twice.
    content_hash = models.CharField(max_length=40, blank=True)
    payload = models.JSONField()
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["source", "content_hash"], name="quarantine_source_hash_idx")]

    def __str__(self) -> str:
        return f"{self.external_id or '?'}: {self.reason}"


class DriftKind(models.TextChoices):
    RENAMED = "renamed", "Renamed (matched)"
    MISSING = "missing", "Missing"
    MISSING_REQUIRED = "missing_required", "Missing required"
    NEW = "new", "New field"


class DriftEvent(models.Model):
    run = models.ForeignKey(EtlRun, on_delete=models.CASCADE, related_name="drift_events")
    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=DriftKind.choices)
    field = models.CharField(max_length=255)
    matched_to = models.CharField(max_length=255, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.field}"
