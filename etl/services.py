"""Every write of the ETL: sources, and runs that fetch, store raw, normalise, upsert and
checkpoint.

Runs inside the organisation's schema. A run holds a per-source advisory lock (a source
never runs twice at once). Each batch — raw rows, unified upserts, quarantine, drift and
the checkpoint — commits in one transaction, so a run stopped anywhere resumes from its
last checkpoint with no duplicates and no gaps.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from auditlog.services import audit_record, changed_fields
from etl import bulk, scheduler_stats, uploads
from etl.config import source_config_parse
from etl.connectors import connector_for
from etl.connectors.base import SliceBudget
from etl.http import FetchError
from etl.metrics import ETL_DRIFT, ETL_QUARANTINED, ETL_ROWS, ETL_RUN_DURATION, ETL_RUNS
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
from nexus.api.errors import Conflict, ServiceUnavailable, field_error
from nexus.api.exceptions import OUTAGE_RETRY_AFTER_SECONDS
from nexus.api.fields import plain_text
from nexus.celery import send_on_commit, wait_for_database
from nexus.crypto import encrypt
from nexus.logging import without_quoted_values
from nexus.net import url_on_record
from tenants.models import WorkerHeartbeat
from tenants.services import organisation_cap, organisation_cap_check

log = structlog.get_logger(__name__)

DEFAULT_REQUIRED = ["external_id", "title"]
MIN_REQUESTS_PER_SECOND = 0.2
MAX_REQUESTS_PER_SECOND = 100.0
STALE_QUEUED_AFTER = timedelta(minutes=10)
EXECUTE_RUN_TASK = "etl.execute_run"  # sent by name: etl.tasks imports this module


class InjectedFailure(RuntimeError):
    """Raised on purpose by --fail-after / ETL_SCHEDULED_FAIL_AFTER."""


# --- Sources ------------------------------------------------------------------------------------


def _check_pace(requests_per_second) -> float:
    try:
        pace = float(requests_per_second)
    except (TypeError, ValueError):
        pace = 0.0
    if not MIN_REQUESTS_PER_SECOND <= pace <= MAX_REQUESTS_PER_SECOND:
        # Slower than this, a source's page budget could hold its runs for days.
        raise field_error(
            "requests_per_second",
            f"requests_per_second must be from {MIN_REQUESTS_PER_SECOND} to {MAX_REQUESTS_PER_SECOND}.",
        )
    return pace


def _origin(url) -> tuple[str, str, int | None]:
    parts = urlsplit(str(url or ""))
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def _clean_mapping(mapping, required) -> tuple[dict, list[str]]:
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise field_error("field_mapping", "field_mapping maps unified fields to incoming field names.")
    unknown = sorted(set(mapping) - set(UNIFIED_FIELDS))
    if unknown:
        raise field_error("field_mapping", f"Unknown unified fields {unknown}; use {list(UNIFIED_FIELDS)}.")
    if "external_id" not in mapping:
        raise field_error("field_mapping", "field_mapping must say which incoming field is the external_id.")
    required = list(required or DEFAULT_REQUIRED)
    if "external_id" not in required:
        required.insert(0, "external_id")
    missing = sorted(set(required) - set(mapping))
    if missing:
        raise field_error("required_fields", f"Required fields {missing} are not in field_mapping.")
    return mapping, required


def _settings_on_record(source: DataSource) -> dict:
    """A source's settings as the audit log keeps them: never its key, and its URL without
    credentials or query."""
    config = dict(source.config or {})
    if config.get("url"):
        config["url"] = url_on_record(str(config["url"]))
    return {
        "name": source.name,
        "kind": source.kind,
        "config": config,
        "api_key": "set" if source.api_key_encrypted else "none",
        "field_mapping": source.field_mapping,
        "required_fields": list(source.required_fields or ()),
        "schedule_minutes": source.schedule_minutes,
        "enabled": source.enabled,
        "requests_per_second": source.requests_per_second,
        "file": source.file_name or None,
    }


def _unshown(source: DataSource) -> dict:
    """What the audit log never shows of a source: its key, and its URL's credentials and query."""
    return {"api_key": source.api_key_encrypted, "config.url": str((source.config or {}).get("url") or "")}


def _unshown_changes(before: dict, held: dict, source: DataSource) -> list[str]:
    """The unshown parts (`held`: as they were) that changed while their recorded form in
    `before` did not: the event names them, never their values."""
    current, shown = _unshown(source), _settings_on_record(source)
    changed = []
    if held["api_key"] != current["api_key"] and before["api_key"] == shown["api_key"]:
        changed.append("api_key")
    url_shown_the_same = before["config"].get("url") == shown["config"].get("url")
    if held["config.url"] != current["config.url"] and url_shown_the_same:
        changed.append("config.url")
    return changed


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
    """Connect a source. LimitReached (409) at the organisation's cap of sources."""
    # Pages call this directly: the same rule as the API's name field.
    name = plain_text(name, field="name")
    mapping, required = _clean_mapping(field_mapping, required_fields)
    # Stored as sent; the typed model is how the rules and a run read it.
    parsed = source_config_parse(kind=kind, config=config)
    if api_key and parsed.api_key_name:
        raise field_error("api_key", "Give either api_key or config.api_key_name, not both.")
    pace = _check_pace(requests_per_second)
    with transaction.atomic():
        organisation_cap_check(cap="max_sources", existing=DataSource.objects.all(), what="data sources")
        source = DataSource.objects.create(
            name=name.strip(),
            kind=kind,
            config=config,
            api_key_encrypted=encrypt(api_key) if api_key else "",
            field_mapping=mapping,
            required_fields=required,
            schedule_minutes=schedule_minutes,
            enabled=enabled,
            requests_per_second=pace,
            next_run_at=timezone.now(),
        )
        audit_record(
            action="etl_source.created",
            target_type="etl_source",
            target_id=source.pk,
            target_label=source.name,
            after=_settings_on_record(source),
        )
    log.info("etl.source_created", source_id=str(source.pk), kind=kind)
    return source


def etl_source_update(*, source: DataSource, **changes) -> DataSource:
    before = _settings_on_record(source)
    held = _unshown(source)
    if "name" in changes:
        changes["name"] = plain_text(changes["name"], field="name")
    if "config" in changes:
        _config_change(source, changes["config"], new_key=bool(changes.get("api_key")))
    if "field_mapping" in changes or "required_fields" in changes:
        source.field_mapping, source.required_fields = _clean_mapping(
            changes.get("field_mapping", source.field_mapping),
            changes.get("required_fields", source.required_fields),
        )
    if "api_key" in changes:
        source.api_key_encrypted = encrypt(changes["api_key"]) if changes["api_key"] else ""
    if "requests_per_second" in changes:
        changes["requests_per_second"] = _check_pace(changes["requests_per_second"])
    for field in ("name", "schedule_minutes", "enabled", "requests_per_second"):
        if field in changes:
            setattr(source, field, changes[field])
    with transaction.atomic():
        # Only once every change is valid: the old file is deleted when this commits.
        if source.file_key and (source.config.get("path") or source.config.get("url")):
            _file_forget(source)  # the source now reads its path or URL
        source.save()
        was, now = changed_fields(before, _settings_on_record(source))
        unshown = _unshown_changes(before, held, source)
        if now or unshown:
            audit_record(
                action="etl_source.updated",
                target_type="etl_source",
                target_id=source.pk,
                target_label=source.name,
                before=was,
                after=now,
                facts={"unshown_changes": unshown} if unshown else None,
            )
    return source


def _config_change(source: DataSource, config: dict, *, new_key: bool) -> None:
    parsed = source_config_parse(kind=source.kind, config=config)
    if source.kind == SourceKind.API and _origin(parsed.url) != _origin(source.config.get("url")):
        # A key was given for one server: it must never follow the source to another.
        # A server-held key may be named again by a later change that keeps the origin.
        config = {k: v for k, v in config.items() if k != "api_key_name"}
        if not new_key:
            source.api_key_encrypted = ""
        log.info("etl.source_key_cleared", source_id=str(source.pk), reason="origin_changed")
    source.config = config


def etl_source_delete(*, source: DataSource) -> None:
    """Delete a source with its records, runs and uploaded file (the file once the delete
    commits)."""
    with transaction.atomic():
        audit_record(
            action="etl_source.deleted",
            target_type="etl_source",
            target_id=source.pk,
            target_label=source.name,
            before=_settings_on_record(source),
        )
        _file_forget(source)
        source.delete()


# --- Uploaded files -----------------------------------------------------------------------------


def _delete_stored(key: str) -> None:
    try:
        storages["default"].delete(key)
    except Exception:  # an orphaned object costs storage, not correctness
        log.warning("etl.file_delete_failed", key=key)


def _file_forget(source: DataSource) -> None:
    """Drop the source's uploaded file: the row now, the object once that commits."""
    key = source.file_key
    if not key:
        return
    source.file_key, source.file_name, source.file_sha256 = "", "", ""
    source.file_size = source.file_uploaded_at = None
    transaction.on_commit(lambda: _delete_stored(key))


def etl_source_file_upload(*, source: DataSource, file: File, name: str | None = None) -> DataSource:
    """Check and store a CSV or RSS/Atom file as the source's content, replacing the
    previous one. ValidationFailed (422) for an API source or content that does not parse,
    PayloadTooLarge (413) over ETL_MAX_UPLOAD_BYTES; nothing is stored then. The checkpoint
    is kept: its checksum makes an unchanged file ingest nothing."""
    if source.kind not in (SourceKind.CSV, SourceKind.RSS):
        raise field_error("file", "API sources read their URL; only CSV and RSS sources take a file.")
    limit = settings.ETL_MAX_UPLOAD_BYTES
    if file is None:
        raise field_error("file", "Send the file as the multipart field 'file'.")
    if (file.size or 0) > limit:
        raise uploads.too_large()
    file.seek(0)
    data = file.read(limit + 1)
    if len(data) > limit:
        raise uploads.too_large()
    uploads.check_content(source.kind, data, delimiter=source.config.get("delimiter") or ",")
    file_name = uploads.safe_file_name(name or file.name, source.kind)
    prefix = uploads.storage_prefix(schema_name=connection.schema_name, source_id=source.pk)
    try:
        key = storages["default"].save(prefix + file_name, ContentFile(data))
    except Exception as exc:  # the storage refused or is unreachable: nothing was changed
        log.error("etl.storage_write_failed", source_id=str(source.pk), error_class=type(exc).__name__)
        unavailable = ServiceUnavailable("The file could not be stored just now; nothing changed. Try again.")
        unavailable.headers = {"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)}
        raise unavailable from exc
    try:
        with transaction.atomic():
            # Two uploads at once: each replaces the other's file, never leaks one.
            source = DataSource.objects.select_for_update().get(pk=source.pk)
            before = _settings_on_record(source)
            _file_forget(source)
            # Uploaded CSV is UTF-8 by contract; the file replaces any path or URL.
            source.config = {k: v for k, v in source.config.items() if k not in ("path", "url", "encoding")}
            source.file_key = key
            source.file_name = file_name
            source.file_size = len(data)
            source.file_sha256 = hashlib.sha256(data).hexdigest()
            source.file_uploaded_at = timezone.now()
            source.save()
            was, now = changed_fields(before, _settings_on_record(source))
            audit_record(
                action="etl_source.updated",
                target_type="etl_source",
                target_id=source.pk,
                target_label=source.name,
                before=was,
                after=now,
                facts={"file_size": len(data), "file_sha256": source.file_sha256},
            )
    except BaseException:
        _delete_stored(key)
        raise
    log.info("etl.file_uploaded", source_id=str(source.pk), size=len(data), sha256=source.file_sha256)
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
    recent = timezone.now() - STALE_QUEUED_AFTER
    # A run between two of its slices is queued too, however long ago it started.
    waiting = EtlRun.objects.filter(source=source, status=RunStatus.QUEUED).filter(
        Q(started_at__gte=recent) | Q(slice_queued_at__gte=recent)
    )
    if waiting.exists():
        raise Conflict("A run of this source is already queued.", details={"reason": "queued"})
    with transaction.atomic():
        run = EtlRun.objects.create(source=source, trigger=_resume_if_failed(source, trigger))
        send_on_commit(EXECUTE_RUN_TASK, str(run.pk), log_event="etl.enqueue_failed")
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
    one_slice: bool = False,
    worker: str = "",
) -> EtlRun:
    """Run a source now, in this process. Conflict (409) when it is already running.

    The run proceeds in slices of at most ETL_SLICE_SECONDS / ETL_SLICE_PAGES, each ending
    with its checkpoint committed. With `one_slice` (a worker's task) only one slice is
    processed: a run with more to do is put back to `queued`, for the caller to continue;
    otherwise slices follow each other here until the run ends."""
    with structlog.contextvars.bound_contextvars(source_id=str(source.pk)):
        try:
            return _run_source(
                source=source,
                trigger=trigger,
                fail_after=fail_after,
                run=run,
                one_slice=one_slice,
                worker=worker,
            )
        finally:
            structlog.contextvars.unbind_contextvars("run_id")  # bound once the run exists


def _run_source(
    *,
    source: DataSource,
    trigger: str,
    fail_after: int | None,
    run: EtlRun | None,
    one_slice: bool,
    worker: str,
) -> EtlRun:
    if not _try_lock(source):
        if run is not None:
            _finish(run, RunStatus.FAILED, "Skipped: the source was already running.", error_class="locked")
        raise Conflict(
            "This source is running now; wait for the run to finish.", details={"reason": "running"}
        )
    try:
        # Runs left "running" by a worker that died hold no lock: they are over.
        lost = (
            EtlRun.objects.filter(source=source, status=RunStatus.RUNNING)
            .exclude(pk=getattr(run, "pk", None))
            .update(
                status=RunStatus.FAILED, error="The worker running it stopped.", finished_at=timezone.now()
            )
        )
        _count_runs_failed_in_bulk(source, lost, error_class="worker_lost")
        checkpoint, _ = Checkpoint.objects.get_or_create(source=source)
        if run is None:
            run = EtlRun.objects.create(source=source, trigger=_resume_if_failed(source, trigger))
        # A run waiting for its next slice whose task was lost (or an operator's run started
        # meanwhile): this run goes on from the same checkpoint, so that one is over. Should
        # its task still arrive, it finds the run no longer queued and does nothing.
        superseded = (
            EtlRun.objects.filter(source=source, status=RunStatus.QUEUED, slices__gt=0)
            .exclude(pk=run.pk)
            .update(
                status=RunStatus.FAILED,
                error="Superseded: a later run continued from its checkpoint.",
                finished_at=timezone.now(),
            )
        )
        _count_runs_failed_in_bulk(source, superseded, error_class="superseded")
        run.status = RunStatus.RUNNING
        run.worker = worker[:255]
        if not run.slices:  # a later slice continues the run: its starting point stays
            run.checkpoint_before = checkpoint.cursor
        run.save(update_fields=["status", "worker", "checkpoint_before"])
        structlog.contextvars.bind_contextvars(run_id=str(run.pk))
        log.info(
            "etl.run_started",
            run_id=str(run.pk),
            source_id=str(source.pk),
            trigger=run.trigger,
            slice=run.slices + 1,
        )
        while True:
            finished = _run_slice(source, run, checkpoint, fail_after)
            if finished or run.status != RunStatus.RUNNING:
                break
            if one_slice:
                run.status = RunStatus.QUEUED
                run.slice_queued_at = timezone.now()
                run.save(update_fields=["status", "slice_queued_at", "slices"])
                log.info("etl.slice_ended", run_id=str(run.pk), slices=run.slices, cursor=checkpoint.cursor)
                break
            time.sleep(_pause_between_slices(source))
    finally:
        _unlock(source)
        DataSource.objects.filter(pk=source.pk).update(
            next_run_at=timezone.now() + timedelta(minutes=source.schedule_minutes)
        )
    return run


def etl_run_execute(*, run_id: uuid.UUID | str, worker: str = "") -> EtlRun | None:
    """What a worker does with a run it was sent: the next slice of the run, if it is still
    queued (None when it is not: finished, failed, or taken over). The lookup waits out a
    database outage rather than dropping the message. Only a run the schedule started is
    stopped on purpose by ETL_SCHEDULED_FAIL_AFTER: the run after a failure is a resume
    (whoever queued it) and must be free to finish, or nothing would ever complete while the
    setting is on. A run whose source is being run elsewhere is skipped (logged)."""
    run = wait_for_database(
        lambda: EtlRun.objects.select_related("source").filter(pk=run_id, status=RunStatus.QUEUED).first(),
        what="ETL run",
    )
    if run is None:
        return None
    fail_after = settings.ETL_SCHEDULED_FAIL_AFTER if run.trigger == RunTrigger.SCHEDULE else None
    try:
        return etl_run_slice(run=run, fail_after=fail_after, worker=worker)
    except Conflict:
        log.info("etl.run_skipped_running", run_id=str(run_id))
        return None


def etl_run_slice(*, run: EtlRun, fail_after: int | None = None, worker: str = "") -> EtlRun:
    """One slice of a queued run, on a worker. The organisation runs at most its
    `max_concurrent_runs` slices at once: without a free slot the run stays queued and is
    sent again after ETL_SLOT_RETRY_SECONDS. A run with more to do after its slice is sent
    again, after one interval of the source's pace, to continue from its checkpoint."""
    slot = _take_slot()
    if slot is None:
        now = timezone.now()
        if not run.slices and now - run.started_at > timedelta(seconds=settings.ETL_SLOT_WAIT_SECONDS):
            # Bounded: a run that never got a slot ends, and the schedule queues the next one.
            expired = EtlRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
                status=RunStatus.FAILED,
                error="The run waited too long for one of the organisation's run slots; the next "
                "scheduled run takes its place.",
                finished_at=now,
            )
            log.warning("etl.run_slot_wait_expired", run_id=str(run.pk))
            run.refresh_from_db()
            if expired:
                _count_run_end(run, RunStatus.FAILED, error_class="slot_wait_expired")
            return run
        # Stamped on every retry: the source's one waiting run, however long it waits.
        EtlRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(slice_queued_at=now)
        log.info("etl.run_waiting_for_slot", run_id=str(run.pk))
        send_on_commit(
            EXECUTE_RUN_TASK,
            str(run.pk),
            countdown=settings.ETL_SLOT_RETRY_SECONDS,
            log_event="etl.enqueue_failed",
        )
        return run
    try:
        run = etl_run_source(
            source=run.source,
            trigger=run.trigger,
            fail_after=fail_after,
            run=run,
            one_slice=True,
            worker=worker,
        )
    finally:
        _release_slot(slot)
    if run.status == RunStatus.QUEUED:
        send_on_commit(
            EXECUTE_RUN_TASK,
            str(run.pk),
            countdown=_pause_between_slices(run.source),
            log_event="etl.enqueue_failed",
        )
    return run


def _slot_key(index: int) -> str:
    return f"etl-slot:{connection.schema_name}:{index}"


def _take_slot() -> int | None:
    """A free run slot of the current organisation, held by this database session (a
    worker that dies frees its slot with its connection)."""
    cap = organisation_cap(cap="max_concurrent_runs")
    with connection.cursor() as cursor:
        for index in range(cap):
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [_slot_key(index)])
            if cursor.fetchone()[0]:
                return index
    return None


def _release_slot(index: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [_slot_key(index)])


def _pause_between_slices(source: DataSource) -> float:
    """The source's own pace also holds from one slice to the next."""
    return 1.0 / source.requests_per_second if source.requests_per_second > 0 else 0.0


def _run_slice(source: DataSource, run: EtlRun, checkpoint: Checkpoint, fail_after: int | None) -> bool:
    """One slice; True when the source was read to its end (the run is then finished)."""
    budget = SliceBudget(seconds=settings.ETL_SLICE_SECONDS, pages=settings.ETL_SLICE_PAGES)
    try:
        finished = _ingest(source, run, checkpoint, fail_after, budget)
    except (FetchError, InjectedFailure) as exc:
        _finish(run, RunStatus.FAILED, str(exc), committed_counts_only=True, error_class=type(exc).__name__)
        return True
    except SoftTimeLimitExceeded:
        _finish(
            run,
            RunStatus.FAILED,
            "The run stopped at its time limit; the next run resumes from the checkpoint.",
            committed_counts_only=True,
            error_class="time_limit",
        )
        return True
    except Exception as exc:
        # A bug: the run's failure line carries the traceback (and is its one error event).
        _finish(
            run,
            RunStatus.FAILED,
            f"Internal error while ingesting ({type(exc).__name__}).",
            committed_counts_only=True,
            error_class=type(exc).__name__,
            exc=exc,
        )
        return True
    run.slices += 1
    if finished:
        _finish(run, RunStatus.SUCCEEDED, "")
    return finished


RUN_COUNTERS = (
    "fetched",
    "inserted",
    "updated",
    "skipped",
    "quarantined",
    "drift_warnings",
    "checkpoint_after",
)


def _finish(
    run: EtlRun,
    status: str,
    error: str,
    *,
    committed_counts_only: bool = False,
    error_class: str = "",
    exc: BaseException | None = None,
) -> None:
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
    _count_run_end(run, status, error_class=error_class, exc=exc)


def _count_runs_failed_in_bulk(source: DataSource, runs: int, *, error_class: str) -> None:
    """Runs of `source` failed by one UPDATE (left by a dead worker, superseded): counted and
    logged together, as bookkeeping (a WARNING, not an error event)."""
    if runs:
        ETL_RUNS.labels(source_kind=source.kind, outcome=RunStatus.FAILED).inc(runs)
        log.warning("etl.run_failed", source_id=str(source.pk), error_class=error_class, runs=runs)


BOOKKEEPING_FAILURES = frozenset({"locked", "slot_wait_expired"})


def _count_run_end(
    run: EtlRun, status: str, *, error_class: str = "", exc: BaseException | None = None
) -> None:
    """The metrics, the health counters and (for a failure) the ERROR line of a run's end."""
    kind = run.source.kind
    ETL_RUNS.labels(source_kind=kind, outcome=status).inc()
    if run.duration_ms is not None:
        ETL_RUN_DURATION.labels(source_kind=kind).observe(run.duration_ms / 1000)
    if status == RunStatus.FAILED:
        # A run skipped or left to wait by the product's own bookkeeping is not an error
        # event; a source that fails, a crash or a time limit is.
        level = "warning" if error_class in BOOKKEEPING_FAILURES else "error"
        getattr(log, level)(
            "etl.run_failed",
            run_id=str(run.pk),
            source_id=str(run.source_id),
            error_class=error_class or "error",
            exc_info=exc,
        )
    scheduler_stats.record_run_finished(status=status)


def _ingest(
    source: DataSource, run: EtlRun, checkpoint: Checkpoint, fail_after: int | None, budget: SliceBudget
) -> bool:
    """Fetch and store from the checkpoint on, until the source ends (True) or the slice's
    budget is spent (False; the checkpoint is where the next slice starts)."""
    connector = connector_for(source)
    connector.budget = budget
    raw_table = RAW_MODELS[source.kind]._meta.db_table
    seen_fields: set[str] = set(checkpoint.known_fields)
    processed = 0
    items = _within(connector.items(checkpoint.cursor), budget, by_time=not connector.manages_budget)
    batches = in_background(
        prepare(
            items,
            source_id=source.pk,
            run_id=run.pk,
            mapping=source.field_mapping,
            required=source.required_fields,
            known_fields=set(seen_fields),
            threshold=settings.ETL_DRIFT_THRESHOLD,
            batch_size=settings.ETL_BATCH_SIZE,
            fail_after=fail_after,
            reported_drift=_reported_drift(run),
        ),
        stop=budget.abandoned,
    )
    try:
        for batch in batches:
            _commit_batch(source, run, checkpoint, batch, seen_fields, raw_table, cursor=batch.cursor)
            processed += batch.size
            if fail_after is not None and processed >= fail_after:
                raise InjectedFailure(
                    f"Stopped on purpose after {processed} items (fail-after {fail_after})."
                )
        if budget.cut:
            if connector.resume_cursor is not None:
                _commit_batch(
                    source, run, checkpoint, None, seen_fields, raw_table, cursor=connector.resume_cursor
                )
            return False
        _commit_batch(source, run, checkpoint, None, seen_fields, raw_table, cursor=connector.final_cursor)
        return True
    finally:
        batches.close()
        connector.close()


def _within(items: Iterator[tuple[dict, dict]], budget: SliceBudget, *, by_time: bool):
    """The connector's items until the slice is abandoned, or (`by_time`, for connectors
    that cannot stop by themselves: one file, one feed) until its time is spent. Each
    item's cursor is a valid place to resume."""
    for item in items:
        if budget.abandoned.is_set():
            return
        yield item
        if by_time and budget.out_of_time():
            budget.cut = True
            return


def _reported_drift(run: EtlRun) -> set[tuple[str, str, str]]:
    """Drift an earlier slice of this run stored: each drift is reported once per run."""
    if not run.slices:
        return set()
    return set(DriftEvent.objects.filter(run=run).values_list("kind", "field", "matched_to"))


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
            counts, quarantine_reasons = _store(source, run, batch, raw_table)
            run.fetched += batch.size
            for name, value in counts.items():
                setattr(run, name, getattr(run, name) + value)
        checkpoint.cursor = cursor
        checkpoint.known_fields = sorted(seen_fields)
        checkpoint.run = run
        checkpoint.save()
        run.checkpoint_after = checkpoint.cursor
        run.save()
    if batch is not None:
        _report_batch(source, run, batch, counts, quarantine_reasons)


# At most this many distinct reasons are named in a batch's quarantine line.
QUARANTINE_REASONS_LOGGED = 5


def _report_batch(
    source: DataSource,
    run: EtlRun,
    batch: PreparedBatch,
    counts: dict[str, int],
    quarantine_reasons: list[str],
) -> None:
    """Metrics and log lines of a committed batch: one WARNING per drifted field, one for
    the items it quarantined (how many, and why; never their content)."""
    ETL_ROWS.labels(source_kind=source.kind).inc(counts["inserted"] + counts["updated"])
    for event in batch.drift:
        ETL_DRIFT.labels(drift_kind=event.kind).inc()
        log.warning(
            "etl.drift",
            source_id=str(source.pk),
            run_id=str(run.pk),
            drift_kind=event.kind,
            expected_field=event.field[:100],
            matched_field=event.matched_to[:100] or None,
            confidence=event.confidence,
        )
    if counts["quarantined"]:
        ETL_QUARANTINED.labels(source_kind=source.kind).inc(counts["quarantined"])
        log.warning(
            "etl.items_quarantined",
            source_id=str(source.pk),
            run_id=str(run.pk),
            count=counts["quarantined"],
            # The reasons quote the offending values (an item's content): elided here.
            reasons=sorted({without_quoted_values(reason) for reason in quarantine_reasons})[
                :QUARANTINE_REASONS_LOGGED
            ],
        )


def _store(
    source: DataSource, run: EtlRun, batch: PreparedBatch, raw_table: str
) -> tuple[dict[str, int], list[str]]:
    """Store a batch; its counts, and the reasons of the items it quarantined."""
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
    counts = {
        "inserted": len(new_lines),
        "updated": len(changed_lines),
        "skipped": skipped,
        "quarantined": len(quarantine),
    }
    return counts, [item.reason[:200] for item in quarantine]


def etl_runs_sweep() -> int:
    """Fail the runs left `running` by a worker that died; runs every JOB_SWEEP_SECONDS.

    A running run holds its source's advisory lock on its worker's database session, which
    PostgreSQL releases when that worker dies. So a `running` run whose source lock can be
    taken is over: it is marked failed, finished when its worker last heartbeated (the time
    it stopped; now if unknown), and the next run of the source is a `resume` from its
    checkpoint. Holding the lock meanwhile keeps a new run from starting in between."""
    stopped = 0
    for source in DataSource.objects.filter(runs__status=RunStatus.RUNNING).distinct():
        if not _try_lock(source):
            continue  # alive: its worker holds the lock
        try:
            for run in EtlRun.objects.filter(source=source, status=RunStatus.RUNNING):
                now = timezone.now()
                beat = (
                    WorkerHeartbeat.objects.filter(name=run.worker).values_list("beat_at", flat=True).first()
                )
                run.status = RunStatus.FAILED
                run.error = "The worker running it stopped; the next run resumes from the checkpoint."
                run.finished_at = max(run.started_at, min(beat, now)) if beat else now
                run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
                run.save(update_fields=["status", "error", "finished_at", "duration_ms"])
                log.warning(
                    "etl.run_worker_lost",
                    run_id=str(run.pk),
                    worker=run.worker,
                    stopped_at=str(run.finished_at),
                )
                _count_run_end(run, RunStatus.FAILED, error_class="worker_lost")
                stopped += 1
        finally:
            _unlock(source)
    return stopped


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
