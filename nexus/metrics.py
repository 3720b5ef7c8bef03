"""GET /metrics for Prometheus. Under gunicorn each worker is its own process, so when
PROMETHEUS_MULTIPROC_DIR is set the samples of every worker are aggregated from there;
otherwise a scrape would see one random worker's counts. The Celery workers of the same
host write to the same directory, so their counters show here too.

Besides the counters the code increments, some series are read when the endpoint is
scraped (LiveCollector): queue depths and the audits' shared concurrency limits from
Redis, and the backlog, workers and disabled endpoints from the database, in one statement
across every organisation's schema. Read at scrape time, they cannot be frozen by a
stopped beat or worker. See docs/specs/observability.md.

Outside DEBUG the endpoint fails closed: it answers only a scraper that presents
METRICS_TOKEN as a bearer token and/or calls from a network in METRICS_ALLOWED_IPS (each
configured check must pass); with neither configured it answers 404, like any refusal, so
a stranger learns nothing, not even that the endpoint exists. The address checked is the
connecting peer (REMOTE_ADDR), never X-Forwarded-For: a scraper calls the process from
inside the network, not through the public proxy.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpResponse, HttpResponseNotFound
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from psycopg.errors import QueryCanceled
from redis.exceptions import RedisError

from nexus.crossschema import across_organisations
from nexus.metrics_access import allowed
from nexus.redis import get_redis
from nexus.worker_metrics import counters_registry

log = structlog.get_logger(__name__)

# kombu's Redis transport keeps a queue's messages of priority 0 under the queue's name and
# the others under the name plus a separator and the priority step.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

# Per organisation: jobs due and waiting, the oldest one's due time, running jobs whose worker
# stopped heartbeating (the live workers' names are a parameter, read once), endpoints the
# product disabled. Literal SQL: nothing from a caller.
_BACKLOG_SQL = """
SELECT
  count(*) FILTER (WHERE j.status = 'pending' AND (j.next_attempt_at IS NULL OR j.next_attempt_at <= now())),
  min(coalesce(j.next_attempt_at, j.created_at))
    FILTER (WHERE j.status = 'pending' AND (j.next_attempt_at IS NULL OR j.next_attempt_at <= now())),
  count(*) FILTER (WHERE j.status = 'running' AND j.worker <> ''
    AND j.started_at < now() - make_interval(secs => %s) AND NOT (j.worker = ANY(%s))),
  (SELECT count(*) FROM {schema}.webhooks_webhookendpoint e
   WHERE NOT e.active AND e.disabled_at IS NOT NULL)
FROM {schema}.jobs_job j
WHERE j.status IN ('pending', 'running')
"""


@dataclass
class OrganisationBacklog:
    org_id: str
    org_slug: str
    jobs_pending: int
    oldest_pending_due: datetime | None
    jobs_on_dead_workers: int
    endpoints_disabled: int


@dataclass
class LiveSnapshot:
    """What the scrape-time series are made of (also shown on the admin's operations page).
    A part whose dependency did not answer is None."""

    taken_at: float
    queue_depths: dict[str, int] | None = None
    backlog: list[OrganisationBacklog] | None = None
    workers_alive: int | None = None
    last_etl_dispatch: float | None = None
    # (provider, model) -> the audits' shared limit of provider calls in flight.
    audit_concurrency: dict[tuple[str, str], int] | None = None
    database_up: bool = False
    redis_up: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def jobs_pending(self) -> int | None:
        return None if self.backlog is None else sum(org.jobs_pending for org in self.backlog)

    @property
    def jobs_on_dead_workers(self) -> int | None:
        return None if self.backlog is None else sum(org.jobs_on_dead_workers for org in self.backlog)

    @property
    def endpoints_disabled(self) -> int | None:
        return None if self.backlog is None else sum(org.endpoints_disabled for org in self.backlog)

    @property
    def oldest_pending_age_seconds(self) -> float | None:
        if self.backlog is None:
            return None
        due = [org.oldest_pending_due for org in self.backlog if org.oldest_pending_due is not None]
        return max((timezone.now() - min(due)).total_seconds(), 0.0) if due else 0.0


def _queue_depths() -> dict[str, int]:
    """Messages waiting per queue, by the queue's kind (jobs, webhooks, etl, audits,
    periodic): the same label whatever prefix a deployment gives its queue names."""
    client = get_redis(settings.CELERY_BROKER_URL)
    pipe = client.pipeline(transaction=False)
    kinds = sorted(settings.CELERY_QUEUES_BY_KIND)
    for kind in kinds:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(settings.CELERY_QUEUES_BY_KIND[kind] + suffix)
    lengths = pipe.execute()
    per_queue = len(_PRIORITY_SUFFIXES)
    return {kind: sum(lengths[i * per_queue : (i + 1) * per_queue]) for i, kind in enumerate(kinds)}


def _backlog() -> tuple[list[OrganisationBacklog], int]:
    from tenants.models import WorkerHeartbeat

    dead_after = settings.JOB_WORKER_DEAD_AFTER_SECONDS
    alive = list(
        WorkerHeartbeat.objects.filter(
            beat_at__gte=timezone.now() - timedelta(seconds=dead_after)
        ).values_list("name", flat=True)
    )
    rows = across_organisations(_BACKLOG_SQL, [dead_after, alive])
    return [OrganisationBacklog(*row) for row in rows], len(alive)


def _last_etl_dispatch() -> float | None:
    from etl.scheduler_stats import last_dispatch_at

    stamp = last_dispatch_at()
    return stamp.timestamp() if stamp is not None else None


def _audit_concurrency() -> dict[tuple[str, str], int]:
    from audits.metrics import concurrency_limits

    return concurrency_limits()


def _is_outage(exc: DatabaseError) -> bool:
    """The database unreachable (no connection, or one that broke), as opposed to the read
    cut off by its statement timeout or failing in one schema: those are not an outage."""
    return isinstance(exc, OperationalError | InterfaceError) and not isinstance(exc.__cause__, QueryCanceled)


def _take_snapshot() -> LiveSnapshot:
    snapshot = LiveSnapshot(taken_at=time.time())
    try:
        snapshot.queue_depths = _queue_depths()
        snapshot.last_etl_dispatch = _last_etl_dispatch()
        snapshot.audit_concurrency = _audit_concurrency()
        snapshot.redis_up = True
    except (RedisError, OSError) as exc:
        snapshot.errors.append(f"redis: {type(exc).__name__}")
    try:
        snapshot.backlog, snapshot.workers_alive = _backlog()
        snapshot.database_up = True
    except DatabaseError as exc:
        snapshot.errors.append(f"database: {type(exc).__name__}")
        snapshot.database_up = not _is_outage(exc)
    if snapshot.errors:
        log.warning("metrics.live_read_failed", errors=snapshot.errors)
    return snapshot


_snapshot_lock = threading.Lock()
_snapshot: LiveSnapshot | None = None


# A read in progress in another thread is waited for this long; then the last reading is
# served (a scrape must answer within Prometheus' timeout, not queue behind a stuck read).
SNAPSHOT_WAIT_SECONDS = 3.0


def live_snapshot() -> LiveSnapshot:
    """The scrape-time readings, reused for METRICS_LIVE_CACHE_SECONDS within a process, so
    several scrapers (or an operator refreshing the page) cost one read."""
    global _snapshot
    if not _snapshot_lock.acquire(timeout=SNAPSHOT_WAIT_SECONDS):
        if _snapshot is not None:
            return _snapshot
        return LiveSnapshot(
            taken_at=time.time(), database_up=True, redis_up=True, errors=["read in progress"]
        )
    try:
        now = time.time()
        if _snapshot is None or now - _snapshot.taken_at >= settings.METRICS_LIVE_CACHE_SECONDS:
            _snapshot = _take_snapshot()
        return _snapshot
    finally:
        _snapshot_lock.release()


class LiveCollector:
    """The series read at scrape time (docs/specs/observability.md, "Read at scrape time")."""

    def collect(self):
        snapshot = live_snapshot()
        up = GaugeMetricFamily(
            "nexus_dependency_up", "1 when the dependency answered this scrape", labels=["dependency"]
        )
        up.add_metric(["database"], 1 if snapshot.database_up else 0)
        up.add_metric(["redis"], 1 if snapshot.redis_up else 0)
        yield up
        read_ok = GaugeMetricFamily(
            "nexus_metrics_read_ok",
            "1 when this scrape's reading of that part succeeded (0: its series are left out)",
            labels=["part"],
        )
        read_ok.add_metric(["queues"], 1 if snapshot.queue_depths is not None else 0)
        read_ok.add_metric(["backlog"], 1 if snapshot.backlog is not None else 0)
        yield read_ok
        if snapshot.queue_depths is not None:
            depth = GaugeMetricFamily(
                "nexus_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
            )
            for queue, length in snapshot.queue_depths.items():
                depth.add_metric([queue], length)
            yield depth
        if snapshot.last_etl_dispatch is not None:
            yield GaugeMetricFamily(
                "nexus_etl_last_dispatch_timestamp_seconds",
                "When the ETL scheduler last dispatched (Unix time)",
                value=snapshot.last_etl_dispatch,
            )
        if snapshot.audit_concurrency is not None:
            limit = GaugeMetricFamily(
                "nexus_audit_concurrency_limit",
                "The audits' shared limit of provider calls in flight (halved on a 429)",
                labels=["provider", "model"],
            )
            for (provider, model), value in sorted(snapshot.audit_concurrency.items()):
                limit.add_metric([provider, model], value)
            yield limit
        if snapshot.backlog is not None:
            yield from self._backlog_series(snapshot)

    @staticmethod
    def _backlog_series(snapshot: LiveSnapshot):
        yield GaugeMetricFamily(
            "nexus_jobs_pending", "Jobs due and not yet running", value=snapshot.jobs_pending
        )
        yield GaugeMetricFamily(
            "nexus_jobs_oldest_pending_age_seconds",
            "How long the oldest due job has waited (0 when none waits)",
            value=snapshot.oldest_pending_age_seconds,
        )
        yield GaugeMetricFamily(
            "nexus_workers_alive", "Workers with a fresh heartbeat", value=snapshot.workers_alive
        )
        yield GaugeMetricFamily(
            "nexus_jobs_running_on_dead_workers",
            "Running jobs whose worker stopped heartbeating",
            value=snapshot.jobs_on_dead_workers,
        )
        yield GaugeMetricFamily(
            "nexus_webhook_endpoints_disabled",
            "Webhook endpoints the product disabled",
            value=snapshot.endpoints_disabled,
        )


_LIVE = LiveCollector()


def _registry():
    """This scrape's series: the counters (counters_registry) and the scrape-time readings."""
    registry = counters_registry()
    registry.register(_LIVE)
    return registry


def metrics(request):
    if not allowed(request):
        return HttpResponseNotFound("not found\n", content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
