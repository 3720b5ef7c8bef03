"""Reads of the ETL (organisation schema): sources, runs, stats, run comparison, records."""

from __future__ import annotations

import statistics
from datetime import datetime

from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery, Sum

from etl.models import DataSource, EtlRun, Record, RunStatus
from nexus.access import access_by_id, filter_ids
from nexus.api.errors import NotFound, ValidationFailed, field_error

COMPARED_COUNTS = ("fetched", "inserted", "updated", "skipped", "quarantined", "drift_warnings")


def source_get(*, source_id) -> DataSource:
    return access_by_id(DataSource.objects.all(), source_id, not_found="No such data source.")


def source_list() -> QuerySet[DataSource]:
    return DataSource.objects.order_by("name", "pk")


def record_get(*, record_id) -> Record:
    """One of the organisation's records; NotFound for any id it does not have."""
    return access_by_id(Record.objects.select_related("source"), record_id, not_found="No such record.")


def record_text(*, record_id) -> str:
    """What an AI job reads of a record: its title, a blank line, its body (either may be
    empty; both empty gives "")."""
    return record_text_of(record_get(record_id=record_id))


def record_text_of(record: Record) -> str:
    """record_text of a record already read (an audit reads thousands of them)."""
    return "\n\n".join(part.strip() for part in (record.title, record.body) if part and part.strip())


def run_get(*, run_id) -> EtlRun:
    return access_by_id(EtlRun.objects.select_related("source"), run_id, not_found="No such run.")


def run_list(*, source: DataSource | None = None) -> QuerySet[EtlRun]:
    runs = EtlRun.objects.select_related("source").order_by("-started_at")
    return runs.filter(source=source) if source else runs


def source_stats() -> list[dict]:
    """One row per source, in two queries whatever the number of sources (the last
    finished run's status and duration are subqueries, not a query per source)."""
    finished = ~Q(runs__status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
    last_finished = (
        EtlRun.objects.filter(source=OuterRef("pk"))
        .exclude(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
        .order_by("-started_at")
    )
    sources = DataSource.objects.annotate(
        processed=Sum("runs__fetched", filter=finished),
        last_success_at=Max("runs__finished_at", filter=Q(runs__status=RunStatus.SUCCEEDED)),
        last_failure_at=Max("runs__finished_at", filter=Q(runs__status=RunStatus.FAILED)),
        run_count=Count("runs", filter=finished),
        last_status=Subquery(last_finished.values("status")[:1]),
        last_duration_ms=Subquery(last_finished.values("duration_ms")[:1]),
    ).order_by("name")
    record_counts = dict(Record.objects.values("source").annotate(n=Count("id")).values_list("source", "n"))
    rows = []
    for source in sources:
        rows.append(
            {
                "source_id": source.pk,
                "name": source.name,
                "kind": source.kind,
                "records": record_counts.get(source.pk, 0),
                "records_processed": source.processed or 0,
                "runs": source.run_count,
                "last_status": source.last_status,
                "last_duration_ms": source.last_duration_ms,
                "last_success_at": source.last_success_at,
                "last_failure_at": source.last_failure_at,
                "next_run_at": source.next_run_at,
            }
        )
    return rows


def _anomalies(run: EtlRun, history: list[EtlRun]) -> list[str]:
    """A run is anomalous where a count or the duration is far from the source's recent
    history: more than 3 standard deviations, or (with little history) 50% and 20 items."""
    found = []
    for name in (*COMPARED_COUNTS, "duration_ms"):
        values = [getattr(r, name) or 0 for r in history]
        value = getattr(run, name) or 0
        if len(values) < 2:
            continue
        mean = statistics.fmean(values)
        spread = statistics.pstdev(values)
        if spread > 0 and abs(value - mean) > 3 * spread:
            found.append(f"{name} {value} is far from the usual {mean:.0f} (±{spread:.0f})")
        elif spread == 0 and abs(value - mean) > max(20, 0.5 * mean):
            found.append(f"{name} {value} differs from the usual {mean:.0f}")
    if run.status == RunStatus.FAILED and all(r.status == RunStatus.SUCCEEDED for r in history):
        found.append("failed, after a history of successful runs")
    return found


def runs_compare(*, source_id=None, run_a=None, run_b=None) -> dict:
    if run_a and run_b:
        a, b = run_get(run_id=run_a), run_get(run_id=run_b)
    else:
        if source_id is None:
            raise field_error("source", "Required.", message="Give a source, or two runs to compare.")
        source = source_get(source_id=source_id)
        latest = list(run_list(source=source).exclude(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])[:2])
        if len(latest) < 2:
            raise NotFound("This source has fewer than two finished runs to compare.")
        b, a = latest
    if a.source_id != b.source_id:
        raise ValidationFailed("Both runs must belong to the same source.")
    history = list(
        run_list(source=b.source)
        .exclude(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
        .exclude(pk=b.pk)[:10]
    )
    return {
        "source_id": b.source_id,
        "previous": a,
        "current": b,
        "differences": {
            name: (getattr(b, name) or 0) - (getattr(a, name) or 0)
            for name in (*COMPARED_COUNTS, "duration_ms")
        },
        "status_changed": a.status != b.status,
        "error_changed": a.error != b.error,
        "drift": {
            "previous": sorted({f"{e.kind}:{e.field}" for e in a.drift_events.all()}),
            "current": sorted({f"{e.kind}:{e.field}" for e in b.drift_events.all()}),
        },
        "anomalies": _anomalies(b, history),
    }


def record_list(
    *,
    sources: list[str] | None = None,
    search: str = "",
    tags: list[str] | None = None,
    published_from: datetime | None = None,
    published_to: datetime | None = None,
) -> QuerySet[Record]:
    """The organisation's records, narrowed by sources, text, tags and a range of
    publication times (both ends included; a record without one is outside any range)."""
    records = Record.objects.select_related("source")
    if published_from is not None:
        records = records.filter(published_at__gte=published_from)
    if published_to is not None:
        records = records.filter(published_at__lte=published_to)
    if sources:
        records = records.filter(
            source_id__in=filter_ids(DataSource, sources, param="source", what="data source")
        )
    if search:
        records = records.filter(Q(title__icontains=search) | Q(body__icontains=search))
    if tags:
        records = records.filter(tags__overlap=tags)
    return records
