"""The process's Redis client for the rate limiter, idempotency locks and health checks
(the cache goes through Django's cache framework). Short timeouts: every caller treats
Redis as optional and must not hang a request waiting for it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone

_clients: dict[str, redis.Redis] = {}


def get_redis(url: str | None = None) -> redis.Redis:
    """The client for `url` (default REDIS_URL), one per process and URL."""
    url = url or settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            health_check_interval=30,
        )
        _clients[url] = client
    return client


def broker_started_at() -> datetime | None:
    """When the Celery broker's Redis last started (from its uptime); None when the broker
    is not Redis or does not answer. A message queued before then was lost with it, unless
    that Redis persists its data (sending such a message again is harmless: see jobs.sweep).
    The uptime is in whole seconds, so this is the latest the start can have been: a message
    sent within a second after the restart may be sent once more, never one left out."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    try:
        uptime = int(get_redis(url).info("server")["uptime_in_seconds"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    return timezone.now() - timedelta(seconds=uptime)


def redis_key(*parts: str) -> str:
    """A key in this deployment's namespace (CACHE_KEY_PREFIX), like the cache's keys."""
    return ":".join([settings.CACHES["default"].get("KEY_PREFIX", "nexus"), *parts])


# --- Per-minute counters ----------------------------------------------------------------------
# Counts that several processes add to and an operator reads as "in the last N minutes"
# (a process's own counter cannot say that): one key per minute, expiring after `ttl`.


def minute_key(*parts: str, minute: int) -> str:
    return redis_key(*parts, str(minute))


def minute_count_add(*parts: str, ttl_seconds: int) -> None:
    """Add one to this minute's count of `parts`. Raises when Redis does not answer."""
    key = minute_key(*parts, minute=int(time.time() // 60))
    pipe = get_redis().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, ttl_seconds)
    pipe.execute()


def minute_keys(*parts: str, minutes: int) -> list[str]:
    """The keys of the last `minutes` minutes' counts of `parts`, oldest first (for one MGET
    with whatever else the caller reads)."""
    now = int(time.time() // 60)
    return [minute_key(*parts, minute=minute) for minute in range(now - minutes + 1, now + 1)]
