"""The jobs' Prometheus series (docs/specs/observability.md). Labels come from fixed sets
(job types, outcomes), never from an organisation."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds: from a few milliseconds (a warm worker) to the sweep's re-send after minutes.
_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240)

JOBS_CREATED = Counter("nexus_jobs_created_total", "Jobs accepted (charged and queued)", ["job_type"])
JOBS_FINISHED = Counter(
    "nexus_jobs_finished_total", "Jobs that reached an end state", ["job_type", "outcome"]
)
JOB_QUEUE_WAIT = Histogram(
    "nexus_job_queue_wait_seconds",
    "From an attempt's due time to a worker claiming it",
    ["job_type"],
    buckets=_WAIT_BUCKETS,
)
JOB_RUN_DURATION = Histogram(
    "nexus_job_run_duration_seconds", "One attempt's provider call", ["job_type"], buckets=_RUN_BUCKETS
)
JOB_RETRIES = Counter("nexus_job_retries_total", "Failed attempts scheduled to run again", ["job_type"])
JOB_REFUNDS = Counter("nexus_job_refunds_total", "Failed jobs whose credits were refunded", ["job_type"])


def _from_zero() -> None:
    """Each job type's series at 0 from the start (a series born at 1 hides its first event
    from rate())."""
    from jobs.models import JobType

    for job_type in JobType.values:
        JOBS_CREATED.labels(job_type=job_type)
        JOB_RETRIES.labels(job_type=job_type)
        JOB_REFUNDS.labels(job_type=job_type)
        for outcome in ("completed", "failed", "cache_hit"):
            JOBS_FINISHED.labels(job_type=job_type, outcome=outcome)


_from_zero()
