"""Every write of the ETL: sources, and runs that fetch, store raw, normalise, upsert and
checkpoint.

Runs inside the organisation's schema. A run holds a per-source advisory lock (a source
never runs twice at once). Each batch — raw rows, unified upserts, quarantine, drift and
the checkpoint — commits in one transaction, so a run stopped anywhere resumes from its
last checkpoint with no duplicates and no gaps.
"""

from __future__ import annotations

import re
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from etl import bulk, scheduler_stats
from etl.connectors import connector_for, local_file
from etl.http import FetchError
from etl.models import (
    RAW_MODELS,
    Checkpoint,
    DataSource,
    DriftEvent,
    EtlRun,
    QuarantinedItem,
    RunStatus,
    RunTrigger,
    SourceKind,
)
from etl.normalise import UNIFIED_FIELDS
from etl.pipeline import PreparedBatch, in_background, prepare
from nexus.api.errors import Conflict, ValidationFailed
from nexus.celery import send_on_commit
from nexus.crypto import encrypt
from nexus.net import UnsafeURL, resolve_public_url

log = structlog.get_logger(__name__)

DEFAULT_REQUIRED = ["external_id", "title"]
API_KEY_ENV = re.compile(r"^ETL_SOURCE_KEY_[A-Z0-9_]{1,64}$")
STALE_QUEUED_AFTER = timedelta(minutes=10)


class InjectedFailure(RuntimeError):
    """Raised on purpose by --fail-after / ETL_SCHEDULED_FAIL_AFTER."""


# --- Sources ------------------------------------------------------------------------------------


def _invalid(field: str, message: str, **details) -> ValidationFailed:
    return ValidationFailed(message, details={"fields": {field: [message]}, **details})


def _clean_config(kind: str, config: dict) -> dict:
    if not isinstance(config, dict):
        raise _invalid("config", "config must be an object.")
    url, path = config.get("url"), config.get("path")
    if kind == SourceKind.API and not url:
        raise _invalid("config", "An API source needs config.url.")
    if kind in (SourceKind.CSV, SourceKind.RSS) and bool(url) == bool(path):
        raise _invalid("config", "Give exactly one of config.path or config.url.")
    if url:
        try:
            resolve_public_url(str(url), require_https=settings.ETL_REQUIRE_HTTPS)
        except UnsafeURL as exc:
            raise _invalid("config", f"config.url: {exc}", reason="unsafe_url") from exc
    if path:
        try:
            local_file(str(path))
        except FetchError as exc:
            raise _invalid("config", f"config.path: {exc}") from exc
    if "api_key" in config:
        raise _invalid("config", "Send the API key as api_key, not inside config.")
    env_name = config.get("api_key_env")
    if env_name is not None and not (isinstance(env_name, str) and API_KEY_ENV.match(env_name)):
        # Any other variable would let a source send the server's own secrets to its URL.
        raise _invalid("config", "config.api_key_env must name a variable starting with ETL_SOURCE_KEY_.")
    if kind == SourceKind.API:
        try:
            page_size = int(config.get("page_size", 100))
        except (TypeError, ValueError):
            page_size = 0
        if not 1 <= page_size <= 1000:
            raise _invalid("config", "config.page_size must be a whole number from 1 to 1000.")
    return config


def _clean_mapping(mapping, required) -> tuple[dict, list[str]]:
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise _invalid("field_mapping", "field_mapping maps unified fields to incoming field names.")
    unknown = sorted(set(mapping) - set(UNIFIED_FIELDS))
    if unknown:
        raise _invalid("field_mapping", f"Unknown unified fields {unknown}; use {list(UNIFIED_FIELDS)}.")
    if "external_id" not in mapping:
        raise _invalid("field_mapping", "field_mapping must say which incoming field is the external_id.")
    required = list(required or DEFAULT_REQUIRED)
    if "external_id" not in required:
        required.insert(0, "external_id")
    missing = sorted(set(required) - set(mapping))
    if missing:
        raise _invalid("required_fields", f"Required fields {missing} are not in field_mapping.")
    return mapping, required


def etl_source_create(
    *,
    name: str,
    kind: str,
    config: dict,
    field_mapping: dict,
    required_fields: list[str] | None = None,
    api_key: str | None = None,
    schedule_minutes: int = 60,
    enabled: bool = True,
    requests_per_second: float = 5.0,
) -> DataSource:
    mapping, required = _clean_mapping(field_mapping, required_fields)
    source = DataSource.objects.create(
        name=name.strip(),
        kind=kind,
        config=_clean_config(kind, config),
        api_key_encrypted=encrypt(api_key) if api_key else "",
        field_mapping=mapping,
        required_fields=required,
        schedule_minutes=schedule_minutes,
        enabled=enabled,
        requests_per_second=requests_per_second,
        next_run_at=timezone.now(),
    )
    log.info("etl.source_created", source_id=str(source.pk), kind=kind)
    return source


def etl_source_update(*, source: DataSource, **changes) -> DataSource:
    if "config" in changes:
        source.config = _clean_config(source.kind, changes["config"])
    if "field_mapping" in changes or "required_fields" in changes:
        source.field_mapping, source.required_fields = _clean_mapping(
            changes.get("field_mapping", source.field_mapping),
            changes.get("required_fields", source.required_fields),
        )
    if "api_key" in changes:
        source.api_key_encrypted = encrypt(changes["api_key"]) if changes["api_key"] else ""
    for field in ("name", "schedule_minutes", "enabled", "requests_per_second"):
        if field in changes:
            setattr(source, field, changes[field])
    source.save()
    return source


# --- Runs ---------------------------------------------------------------------------------------


def _lock_key(source: DataSource) -> str:
    return f"etl:{connection.schema_name}:{source.pk}"


def _try_lock(source: DataSource) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [_lock_key(source)])
        return cursor.fetchone()[0]


def _unlock(source: DataSource) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [_lock_key(source)])


def etl_run_queue(*, source: DataSource, trigger: str) -> EtlRun:
    """Record a queued run and send it to a worker. Conflict (409) when the source is
    running or already has a run waiting."""
    if not _try_lock(source):
        raise Conflict(
            "This source is running now; wait for the run to finish.", details={"reason": "running"}
        )
    _unlock(source)
    waiting = EtlRun.objects.filter(
        source=source, status=RunStatus.QUEUED, started_at__gte=timezone.now() - STALE_QUEUED_AFTER
    )
    if waiting.exists():
        raise Conflict("A run of this source is already queued.", details={"reason": "queued"})
    from etl.tasks import execute_run

    with transaction.atomic():
        run = EtlRun.objects.create(source=source, trigger=_resume_if_failed(source, trigger))
        send_on_commit(execute_run, str(run.pk), log_event="etl.enqueue_failed")
    return run


def _resume_if_failed(source: DataSource, trigger: str) -> str:
    """A run after a failed one continues from that run's checkpoint: it is a resume."""
    last = (
        EtlRun.objects.filter(source=source).exclude(status=RunStatus.QUEUED).order_by("-started_at").first()
    )
    return RunTrigger.RESUME if last is not None and last.status == RunStatus.FAILED else trigger


def etl_run_source(
    *,
    source: DataSource,
    trigger: str = RunTrigger.MANUAL,
    fail_after: int | None = None,
    run: EtlRun | None = None,
) -> EtlRun:
    """Run a source now, in this process. Conflict (409) when it is already running."""
    if not _try_lock(source):
        if run is not None:
            _finish(run, RunStatus.FAILED, "Skipped: the source was already running.")
        raise Conflict(
            "This source is running now; wait for the run to finish.", details={"reason": "running"}
        )
    try:
        # Runs left "running" by a worker that died hold no lock: they are over.
        EtlRun.objects.filter(source=source, status=RunStatus.RUNNING).exclude(
            pk=getattr(run, "pk", None)
        ).update(status=RunStatus.FAILED, error="The worker running it stopped.", finished_at=timezone.now())
        checkpoint, _ = Checkpoint.objects.get_or_create(source=source)
        if run is None:
            run = EtlRun.objects.create(source=source, trigger=_resume_if_failed(source, trigger))
        run.status = RunStatus.RUNNING
        run.checkpoint_before = checkpoint.cursor
        run.save(update_fields=["status", "checkpoint_before"])
        log.info("etl.run_started", run_id=str(run.pk), source_id=str(source.pk), trigger=run.trigger)
        try:
            _ingest(source, run, checkpoint, fail_after)
        except (FetchError, InjectedFailure) as exc:
            _finish(run, RunStatus.FAILED, str(exc), committed_counts_only=True)
        except Exception as exc:
            log.exception("etl.run_crashed", run_id=str(run.pk))
            _finish(
                run,
                RunStatus.FAILED,
                f"Internal error while ingesting ({type(exc).__name__}).",
                committed_counts_only=True,
            )
        else:
            _finish(run, RunStatus.SUCCEEDED, "")
    finally:
        _unlock(source)
        DataSource.objects.filter(pk=source.pk).update(
            next_run_at=timezone.now() + timedelta(minutes=source.schedule_minutes)
        )
    return run


RUN_COUNTERS = (
    "fetched",
    "inserted",
    "updated",
    "skipped",
    "quarantined",
    "drift_warnings",
    "checkpoint_after",
)


def _finish(run: EtlRun, status: str, error: str, *, committed_counts_only: bool = False) -> None:
    if committed_counts_only:
        # A batch that failed half-way rolled back; so do the counts it had added in memory.
        run.refresh_from_db(fields=RUN_COUNTERS)
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
    run.save()
    log.info(
        "etl.run_finished",
        run_id=str(run.pk),
        status=status,
        fetched=run.fetched,
        inserted=run.inserted,
        updated=run.updated,
        skipped=run.skipped,
        quarantined=run.quarantined,
        duration_ms=run.duration_ms,
        error=error or None,
    )
    scheduler_stats.record_run_finished(status=status)


def _ingest(source: DataSource, run: EtlRun, checkpoint: Checkpoint, fail_after: int | None) -> None:
    connector = connector_for(source)
    raw_table = RAW_MODELS[source.kind]._meta.db_table
    seen_fields: set[str] = set(checkpoint.known_fields)
    processed = 0
    batches = in_background(
        prepare(
            connector.items(checkpoint.cursor),
            source_id=source.pk,
            run_id=run.pk,
            mapping=source.field_mapping,
            required=source.required_fields,
            known_fields=set(seen_fields),
            threshold=settings.ETL_DRIFT_THRESHOLD,
            batch_size=settings.ETL_BATCH_SIZE,
            fail_after=fail_after,
        )
    )
    try:
        for batch in batches:
            _commit_batch(source, run, checkpoint, batch, seen_fields, raw_table, cursor=batch.cursor)
            processed += batch.size
            if fail_after is not None and processed >= fail_after:
                raise InjectedFailure(
                    f"Stopped on purpose after {processed} items (fail-after {fail_after})."
                )
        _commit_batch(source, run, checkpoint, None, seen_fields, raw_table, cursor=connector.final_cursor)
    finally:
        batches.close()
        connector.close()


def _commit_batch(
    source, run, checkpoint, batch: PreparedBatch | None, seen_fields, raw_table, *, cursor: dict
):
    with transaction.atomic():
        # The batch and its checkpoint commit together, so a crash can only lose both: the
        # next run starts from the last checkpoint that reached the disk and fetches the
        # batch again. That makes waiting for each commit's WAL flush unnecessary here.
        with connection.cursor() as db:
            db.execute("SET LOCAL synchronous_commit TO OFF")
        if batch is not None:
            if batch.drift:
                DriftEvent.objects.bulk_create(
                    DriftEvent(
                        run=run,
                        source=source,
                        kind=event.kind,
                        field=event.field[:255],
                        matched_to=event.matched_to[:255],
                        confidence=event.confidence,
                        message=event.message[:500],
                    )
                    for event in batch.drift
                )
                run.drift_warnings += len(batch.drift)
            seen_fields |= batch.incoming
            counts = _store(source, run, batch, raw_table)
            run.fetched += batch.size
            for name, value in counts.items():
                setattr(run, name, getattr(run, name) + value)
        checkpoint.cursor = cursor
        checkpoint.known_fields = sorted(seen_fields)
        checkpoint.run = run
        checkpoint.save()
        run.checkpoint_after = checkpoint.cursor
        run.save()


def _store(source: DataSource, run: EtlRun, batch: PreparedBatch, raw_table: str) -> dict[str, int]:
    bulk.insert_raw(raw_table, source.pk, batch.raw_lines)
    known = bulk.existing_hashes(source.pk, list(batch.latest))
    new_lines, changed_lines, skipped = [], [], batch.duplicates
    rejected: list[tuple[str, str, dict, str]] = [  # external id, content hash, payload, reason
        ("", digest, payload, reason) for payload, reason, digest in batch.rejected_without_id
    ]
    for external_id, (digest, line, reason, payload) in batch.latest.items():
        if known.get(external_id) == digest:
            skipped += 1
            continue
        if line is None:
            rejected.append((external_id, digest, payload, reason))
            continue
        (changed_lines if external_id in known else new_lines).append(line)
    # An item rejected unchanged by an earlier run is in quarantine already: counted as
    # skipped, not stored and counted again (re-reading a changed file or feed would
    # otherwise add a copy of each bad row on every run).
    quarantined = set(
        QuarantinedItem.objects.filter(
            source=source, content_hash__in=[digest for _, digest, _, _ in rejected]
        ).values_list("content_hash", flat=True)
    )
    quarantine = []
    for external_id, digest, payload, reason in rejected:
        if digest in quarantined:
            skipped += 1
            continue
        quarantined.add(digest)
        quarantine.append(
            QuarantinedItem(
                source=source,
                run=run,
                external_id=external_id,
                content_hash=digest,
                payload=payload,
                reason=reason,
            )
        )
    bulk.insert_records(new_lines)
    bulk.upsert_records(changed_lines)
    QuarantinedItem.objects.bulk_create(quarantine)
    return {
        "inserted": len(new_lines),
        "updated": len(changed_lines),
        "skipped": skipped,
        "quarantined": len(quarantine),
    }


def etl_dispatch_due() -> int:
    """Queue every enabled source whose next run is due (called per organisation)."""
    now = timezone.now()
    due = DataSource.objects.filter(enabled=True, next_run_at__lte=now)
    queued = 0
    for source in due:
        DataSource.objects.filter(pk=source.pk).update(
            next_run_at=now + timedelta(minutes=source.schedule_minutes)
        )
        try:
            etl_run_queue(source=source, trigger=RunTrigger.SCHEDULE)
            queued += 1
        except Conflict:
            continue
    return queued
