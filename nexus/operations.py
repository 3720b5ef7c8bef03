"""Reads for the admin's operations page (docs/specs/observability.md, "Operations page").
For operators only. Each per-organisation read is ONE statement across every organisation's
schema (nexus.crossschema), so the page costs the same with ten organisations or a thousand;
nothing read here carries a job's input, a payload, a person's address or a full URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import structlog
from django.db import DatabaseError
from redis.exceptions import RedisError

from nexus.crossschema import across_organisations
from nexus.metrics import LiveSnapshot, live_snapshot
from nexus.observability import task_failures_per_minute

log = structlog.get_logger(__name__)

# Failures of the last hour, counted per ten minutes.
WINDOW_SECONDS = 3600
BUCKET_SECONDS = 600
BUCKETS = WINDOW_SECONDS // BUCKET_SECONDS

# (kind as the SQL names it, label on the page), in the page's order.
FAILURE_KINDS = (
    ("jobs", "Jobs failed"),
    ("webhook_attempts", "Webhook delivery attempts failed"),
    ("etl_runs", "ETL runs failed"),
)

DISABLED_ENDPOINTS_SHOWN = 50
DISABLED_REASON_CHARS = 160

# One row per (kind, ten-minute bucket) with failures; bucket 0 is the most recent. A row
# stamped after the statement started (a clock step between hosts) counts as the latest.
# Literal SQL: nothing from a caller.
_FAILURES_SQL = f"""
SELECT f.kind,
       least(greatest(floor(extract(epoch FROM statement_timestamp() - f.at) / {BUCKET_SECONDS}), 0),
             {BUCKETS - 1})::int,
       count(*)
FROM (
  SELECT 'jobs' AS kind, j.failed_at AS at FROM {{schema}}.jobs_job j
  WHERE j.failed_at > statement_timestamp() - make_interval(secs => {WINDOW_SECONDS})
  UNION ALL
  SELECT 'webhook_attempts', a.started_at FROM {{schema}}.webhooks_webhookattempt a
  WHERE NOT a.succeeded AND a.started_at > statement_timestamp() - make_interval(secs => {WINDOW_SECONDS})
  UNION ALL
  SELECT 'etl_runs', r.finished_at FROM {{schema}}.etl_etlrun r
  WHERE r.status = 'failed'
    AND r.finished_at > statement_timestamp() - make_interval(secs => {WINDOW_SECONDS})
) f
GROUP BY 1, 2
"""  # noqa: S608  # nosec B608

# Per organisation with sources: sources, enabled ones, enabled ones whose latest finished
# run failed (a run queued or running behind a failure does not make the source healthy),
# and when its last run finished. No row for an organisation without sources.
_ETL_HEALTH_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE s.enabled),
       count(*) FILTER (WHERE s.enabled AND latest.status = 'failed'),
       (SELECT max(r.finished_at) FROM {schema}.etl_etlrun r)
FROM {schema}.etl_datasource s
LEFT JOIN LATERAL (
  SELECT r.status FROM {schema}.etl_etlrun r
  WHERE r.source_id = s.id AND r.status IN ('succeeded', 'failed')
  ORDER BY r.started_at DESC
  LIMIT 1
) latest ON true
HAVING count(*) > 0
"""

# Endpoints the product switched off (an admin's switch-off leaves no disabled_at), newest
# first; each organisation sends at most as many as the page shows.
_DISABLED_ENDPOINTS_SQL = f"""
SELECT * FROM (
  SELECT e.url, e.disabled_at, e.disabled_reason FROM {{schema}}.webhooks_webhookendpoint e
  WHERE NOT e.active AND e.disabled_at IS NOT NULL
  ORDER BY e.disabled_at DESC
  LIMIT {DISABLED_ENDPOINTS_SHOWN}
) d
"""  # noqa: S608  # nosec B608


@dataclass(frozen=True)
class FailureSeries:
    kind: str
    label: str
    buckets: tuple[int, ...]  # oldest ten minutes first, the current ten minutes last

    @property
    def total(self) -> int:
        return sum(self.buckets)


@dataclass(frozen=True)
class OrganisationFailures:
    org_id: str
    org_slug: str
    counts: dict[str, int]  # by kind

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class FailuresLastHour:
    series: list[FailureSeries]
    by_organisation: list[OrganisationFailures]  # organisations with failures, most first


@dataclass(frozen=True)
class OrganisationEtlHealth:
    org_id: str
    org_slug: str
    sources: int
    sources_enabled: int
    sources_failing: int
    last_run_finished_at: datetime | None


@dataclass(frozen=True)
class DisabledEndpoint:
    org_id: str
    org_slug: str
    host: str  # never the URL: its path or query string may carry the receiver's secret
    disabled_at: datetime
    disabled_reason: str


@dataclass
class OperationsOverview:
    """Everything the page shows. A part whose read failed is None, and `errors` says which."""

    live: LiveSnapshot
    failures: FailuresLastHour | None = None
    etl_health: list[OrganisationEtlHealth] | None = None
    endpoints_disabled: list[DisabledEndpoint] | None = None
    errors: list[str] = field(default_factory=list)


def failures_last_hour() -> FailuresLastHour:
    kinds = [kind for kind, _ in FAILURE_KINDS]
    buckets = {kind: [0] * BUCKETS for kind in kinds}
    per_org: dict[tuple[str, str], dict[str, int]] = {}
    for org_id, org_slug, kind, age_bucket, count in across_organisations(_FAILURES_SQL):
        buckets[kind][BUCKETS - 1 - age_bucket] += count
        counts = per_org.setdefault((org_id, org_slug), dict.fromkeys(kinds, 0))
        counts[kind] += count
    by_organisation = sorted(
        (OrganisationFailures(org_id, slug, counts) for (org_id, slug), counts in per_org.items()),
        key=lambda org: (-org.total, org.org_slug),
    )
    return FailuresLastHour(
        series=[FailureSeries(kind, label, tuple(buckets[kind])) for kind, label in FAILURE_KINDS],
        by_organisation=by_organisation,
    )


def task_failures_last_hour() -> FailureSeries:
    """Tasks that raised, on any worker, per ten minutes (from Redis: see
    nexus.observability.record_task_failure); not per organisation."""
    minutes = task_failures_per_minute(WINDOW_SECONDS // 60)
    per_bucket = BUCKET_SECONDS // 60
    buckets = tuple(sum(minutes[i : i + per_bucket]) for i in range(0, len(minutes), per_bucket))
    return FailureSeries("tasks", "Tasks that raised", buckets)


def etl_health() -> list[OrganisationEtlHealth]:
    """Organisations with sources, the unhealthiest first: most failing sources, then the
    longest since a run finished (never before any), then by slug."""
    rows = [OrganisationEtlHealth(*row) for row in across_organisations(_ETL_HEALTH_SQL)]
    return sorted(
        rows,
        key=lambda org: (
            -org.sources_failing,
            org.last_run_finished_at is not None,
            org.last_run_finished_at.timestamp() if org.last_run_finished_at else 0.0,
            org.org_slug,
        ),
    )


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(unreadable URL)"


def endpoints_disabled(*, limit: int = DISABLED_ENDPOINTS_SHOWN) -> list[DisabledEndpoint]:
    """The most recently disabled endpoints across organisations, newest first."""
    rows = sorted(across_organisations(_DISABLED_ENDPOINTS_SQL), key=lambda row: row[3], reverse=True)
    return [
        DisabledEndpoint(
            org_id=org_id,
            org_slug=org_slug,
            host=_host(url),
            disabled_at=disabled_at,
            disabled_reason=_truncated(reason),
        )
        for org_id, org_slug, url, disabled_at, reason in rows[:limit]
    ]


def _truncated(text: str, limit: int = DISABLED_REASON_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def operations_overview() -> OperationsOverview:
    """The live snapshot (shared with /metrics) and the page's own reads; a read that fails
    (database down, statement timeout) leaves its part None instead of failing the page."""
    overview = OperationsOverview(live=live_snapshot())
    reads = (
        ("failures", failures_last_hour),
        ("etl_health", etl_health),
        ("endpoints_disabled", endpoints_disabled),
    )
    for name, read in reads:
        try:
            setattr(overview, name, read())
        except DatabaseError as exc:
            overview.errors.append(f"{name}: {type(exc).__name__}")
    if overview.failures is not None:
        try:
            overview.failures.series.append(task_failures_last_hour())
        except (RedisError, OSError) as exc:
            overview.errors.append(f"task_failures: {type(exc).__name__}")
    if overview.errors:
        log.warning("operations.read_failed", errors=overview.errors)
    return overview
