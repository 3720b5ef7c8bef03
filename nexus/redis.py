"""The process's Redis client for the rate limiter, idempotency locks and health checks
(the cache goes through Django's cache framework). Short timeouts: every caller treats
Redis as optional and must not hang a request waiting for it."""

from __future__ import annotations

import redis
from django.conf import settings

_clients: dict[str, redis.Redis] = {}


def get_redis() -> redis.Redis:
    url = settings.REDIS_URL
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


def redis_key(*parts: str) -> str:
    """A key in this deployment's namespace (CACHE_KEY_PREFIX), like the cache's keys."""
    return ":".join([settings.CACHES["default"].get("KEY_PREFIX", "nexus"), *parts])
