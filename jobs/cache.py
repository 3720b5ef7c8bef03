"""Results of completed jobs, cached in Redis for an hour per organisation.

The key is the SHA-256 of job type and text; Django's cache key function (django-tenants'
make_key) prefixes it with the organisation's schema, so one organisation's entries are
never looked up for another. Redis being down is never an outage here: a failed read is a
miss, a failed write is skipped, and both are logged and counted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.core.cache import cache
from prometheus_client import Counter

log = structlog.get_logger(__name__)

CACHE_REQUESTS = Counter("nexus_cache_requests_total", "Job result cache lookups", ["result"])
CACHE_UNAVAILABLE = Counter(
    "nexus_cache_unavailable_total", "Job result cache operations that failed (Redis down)", ["operation"]
)


@dataclass(frozen=True)
class CachedResult:
    output: dict
    provider: str
    model: str
    source_job_id: str


def cache_key(job_type: str, text: str) -> str:
    digest = hashlib.sha256(f"{job_type}\0{text}".encode()).hexdigest()
    return f"jobcache:{job_type}:{digest}"


def cached_result(*, job_type: str, text: str) -> CachedResult | None:
    try:
        entry = cache.get(cache_key(job_type, text))
    except Exception as exc:  # any Redis failure is a miss, never an error for the caller
        CACHE_UNAVAILABLE.labels(operation="get").inc()
        log.warning("cache.unavailable", operation="get", error=type(exc).__name__)
        return None
    try:
        result = CachedResult(**entry) if entry else None
    except TypeError:
        result = None
    CACHE_REQUESTS.labels(result="hit" if result else "miss").inc()
    return result


def cache_store(*, job) -> None:
    entry = {
        "output": job.output,
        "provider": job.provider,
        "model": job.model,
        "source_job_id": str(job.pk),
    }
    try:
        cache.set(cache_key(job.job_type, job.text), entry, timeout=settings.JOB_CACHE_TTL_SECONDS)
    except Exception as exc:
        CACHE_UNAVAILABLE.labels(operation="set").inc()
        log.warning("cache.unavailable", operation="set", error=type(exc).__name__)
