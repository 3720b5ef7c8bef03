"""The ETL scheduler's health across every organisation, for GET /health: when the
scheduler last dispatched and how many runs succeeded or failed in the last hour.

Runs live in each organisation's schema, so counting them there would mean a query per
schema on every health check. Instead a finishing run adds one to a per-minute Redis
counter and the dispatcher stamps its time; /health reads them in one round trip. Nothing
here names an organisation, a source or an error. Redis being down loses counts, never a
run.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from nexus.redis import get_redis, minute_count_add, minute_keys, redis_key

log = structlog.get_logger(__name__)

COUNTED_STATUSES = ("succeeded", "failed")
WINDOW_MINUTES = 60
# Buckets outlive the window so a clock step between processes cannot drop one early.
BUCKET_TTL_SECONDS = 2 * WINDOW_MINUTES * 60


def _runs(status: str) -> tuple[str, ...]:
    return ("etl", "scheduler", "runs", status)


def _last_dispatch_key() -> str:
    return redis_key("etl", "scheduler", "last_dispatch")


def record_run_finished(*, status: str) -> None:
    if status not in COUNTED_STATUSES:
        return
    try:
        minute_count_add(*_runs(status), ttl_seconds=BUCKET_TTL_SECONDS)
    except Exception:  # the run itself is recorded in its schema; /health loses one count
        log.warning("etl.scheduler_stats_unrecorded", what="run_finished")


def record_dispatch() -> None:
    try:
        get_redis().set(_last_dispatch_key(), datetime.now(UTC).isoformat())
    except Exception:
        log.warning("etl.scheduler_stats_unrecorded", what="dispatch")


def last_dispatch_at() -> datetime | None:
    """When the scheduler last dispatched (None: never, or the stamp expired). Raises when
    Redis does not answer: the caller (the metrics endpoint) reports that."""
    value = get_redis().get(_last_dispatch_key())
    return datetime.fromisoformat(value.decode()) if value else None


def scheduler_summary() -> dict | None:
    """{last_dispatch_at, runs_last_hour: {succeeded, failed}}, or None when Redis does
    not answer."""
    keys = [key for status in COUNTED_STATUSES for key in minute_keys(*_runs(status), minutes=WINDOW_MINUTES)]
    try:
        values = get_redis().mget([_last_dispatch_key(), *keys])
    except Exception:
        return None
    last_dispatch, counts = values[0], values[1:]
    runs = {
        status: sum(int(v) for v in counts[i * WINDOW_MINUTES : (i + 1) * WINDOW_MINUTES] if v)
        for i, status in enumerate(COUNTED_STATUSES)
    }
    return {
        "last_dispatch_at": last_dispatch.decode() if last_dispatch else None,
        "runs_last_hour": runs,
    }
