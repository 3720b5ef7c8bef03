"""Every write of the ETL: sources, and runs that fetch, store raw, normalise, upsert and
checkpoint.

Runs inside the organisation's schema. A run holds a per-source advisory lock (a source
never runs twice at once). Each batch — raw rows, unified upserts, quarantine, drift and
the checkpoint — commits in one transaction, so a run stopped anywhere resumes from its
last checkpoint with no duplicates and no gaps.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from etl.connectors import connector_for, local_file
from etl.drift import MappingPlan, plan_mapping
from etl.http import FetchError
from etl.models import (
    RAW_MODELS,
    Checkpoint,
    DataSource,
    DriftEvent,
    EtlRun,
    QuarantinedItem,
    Record,
    RunStatus,
    RunTrigger,
    SourceKind,
)
from etl.normalise import UNIFIED_FIELDS, ItemRejected, clean_text, content_hash, normalise
from nexus.api.errors import Conflict, ValidationFailed
from nexus.crypto import encrypt
from nexus.net import UnsafeURL, resolve_public_url
from nexus.redis import get_redis, redis_key

log = structlog.get_logger(__name__)

DEFAULT_REQUIRED = ["external_id", "title"]
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
    with transaction.atomic():
        run = EtlRun.objects.create(source=source, trigger=_resume_if_failed(source, trigger))
        transaction.on_commit(lambda: _send(run))
    return run


def _resume_if_failed(source: DataSource, trigger: str) -> str:
    """A run after a failed one continues from that run's checkpoint: it is a resume."""
    last = (
        EtlRun.objects.filter(source=source).exclude(status=RunStatus.QUEUED).order_by("-started_at").first()
    )
    return RunTrigger.RESUME if last is not None and last.status == RunStatus.FAILED else trigger


def _send(run: EtlRun) -> None:
    from etl.tasks import execute_run

    try:
        execute_run.delay(str(run.pk))
    except Exception:
        log.warning("etl.enqueue_failed", run_id=str(run.pk), exc_info=True)
        EtlRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED,
            error="The job queue is unavailable; run it again later.",
            finished_at=timezone.now(),
        )


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
            _finish(run, RunStatus.FAILED, str(exc))
        except Exception as exc:
            log.exception("etl.run_crashed", run_id=str(run.pk))
            _finish(run, RunStatus.FAILED, f"Internal error while ingesting ({type(exc).__name__}).")
        else:
            _finish(run, RunStatus.SUCCEEDED, "")
    finally:
        _unlock(source)
        DataSource.objects.filter(pk=source.pk).update(
            next_run_at=timezone.now() + timedelta(minutes=source.schedule_minutes)
        )
    return run


def _finish(run: EtlRun, status: str, error: str) -> None:
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
    try:
        summary = {"status": status, "finished_at": run.finished_at.isoformat()}
        get_redis().set(redis_key("etl", "last_run"), json.dumps(summary))
    except Exception:  # /health loses one line of detail; the run itself is recorded
        log.warning("etl.last_run_unrecorded")


def _ingest(source: DataSource, run: EtlRun, checkpoint: Checkpoint, fail_after: int | None) -> None:
    connector = connector_for(source)
    raw_model = RAW_MODELS[source.kind]
    plan: MappingPlan | None = None
    seen_fields: set[str] = set(checkpoint.known_fields)
    processed = 0
    batch: list[tuple[dict, dict]] = []
    limit = settings.ETL_BATCH_SIZE
    try:
        for item in connector.items(checkpoint.cursor):
            batch.append(item)
            size = limit if fail_after is None else min(limit, fail_after - processed)
            if len(batch) >= size:
                plan = _commit_batch(source, run, checkpoint, batch, plan, seen_fields, raw_model)
                processed += len(batch)
                batch = []
                if fail_after is not None and processed >= fail_after:
                    raise InjectedFailure(
                        f"Stopped on purpose after {processed} items (fail-after {fail_after})."
                    )
        _commit_batch(
            source, run, checkpoint, batch, plan, seen_fields, raw_model, final=connector.final_cursor
        )
    finally:
        connector.close()


def _commit_batch(source, run, checkpoint, batch, plan, seen_fields, raw_model, final: dict | None = None):
    with transaction.atomic():
        if batch:
            incoming = set().union(*(payload.keys() for payload, _ in batch))
            if plan is None:
                plan = plan_mapping(
                    mapping=source.field_mapping,
                    incoming=incoming,
                    required=source.required_fields,
                    threshold=settings.ETL_DRIFT_THRESHOLD,
                    known=seen_fields,
                )
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
                    for event in plan.events
                )
                run.drift_warnings += len(plan.events)
            seen_fields |= incoming
            counts = _store(source, run, batch, plan, raw_model)
            run.fetched += len(batch)
            for name, value in counts.items():
                setattr(run, name, getattr(run, name) + value)
        checkpoint.cursor = final if final is not None else batch[-1][1]
        checkpoint.known_fields = sorted(seen_fields)
        checkpoint.run = run
        checkpoint.save()
        run.checkpoint_after = checkpoint.cursor
        run.save()
    return plan


def _store(source: DataSource, run: EtlRun, batch, plan: MappingPlan, raw_model) -> dict[str, int]:
    now = timezone.now()
    mapping = plan.effective
    id_field = mapping.get("external_id")
    raws, quarantine = [], []
    latest: dict[str, tuple[dict, str]] = {}
    duplicates = 0
    for payload, _cursor in batch:
        external_id = clean_text(payload.get(id_field))
        if external_id is None:
            quarantine.append(
                QuarantinedItem(
                    source=source,
                    run=run,
                    payload=payload,
                    reason=f"missing required field 'external_id' (mapped from {id_field!r})",
                )
            )
            continue
        external_id = external_id[:255]
        digest = content_hash(payload)
        raws.append(
            raw_model(
                source=source,
                run=run,
                external_id=external_id,
                content_hash=digest,
                payload=payload,
                fetched_at=now,
            )
        )
        duplicates += external_id in latest
        latest[external_id] = (payload, digest)
    raw_model.objects.bulk_create(raws, ignore_conflicts=True, batch_size=2000)

    known = dict(
        Record.objects.filter(source=source, external_id__in=list(latest)).values_list(
            "external_id", "content_hash"
        )
    )
    records, inserted, updated, skipped = [], 0, 0, duplicates
    for external_id, (payload, digest) in latest.items():
        if known.get(external_id) == digest:
            skipped += 1
            continue
        try:
            clean = normalise(payload, mapping, source.required_fields)
        except ItemRejected as exc:
            quarantine.append(
                QuarantinedItem(
                    source=source, run=run, external_id=external_id, payload=payload, reason=str(exc)
                )
            )
            continue
        records.append(
            Record(
                source=source,
                external_id=external_id,
                title=clean.title or "",
                body=clean.body or "",
                url=clean.url or "",
                author=clean.author or "",
                published_at=clean.published_at,
                tags=clean.tags,
                extra=clean.extra,
                content_hash=digest,
                first_seen_run=run,
                last_updated_run=run,
                created_at=now,
                updated_at=now,
            )
        )
        if external_id in known:
            updated += 1
        else:
            inserted += 1
    Record.objects.bulk_create(
        records,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["source", "external_id"],
        update_fields=[
            "title",
            "body",
            "url",
            "author",
            "published_at",
            "tags",
            "extra",
            "content_hash",
            "last_updated_run",
            "updated_at",
        ],
    )
    QuarantinedItem.objects.bulk_create(quarantine)
    return {"inserted": inserted, "updated": updated, "skipped": skipped, "quarantined": len(quarantine)}


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


def sample_data_path(name: str) -> str:
    return str(Path("etl") / "sample_data" / name)
