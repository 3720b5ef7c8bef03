"""GET /health: public liveness and dependency status for load balancers and humans.

200 while the database answers (Redis down is reported but degrades, it does not take
the service out of rotation: the API keeps working without its cache); 503 when the
database does not answer. Public, so it tells nothing of any one organisation: the ETL
part is an aggregate over all of them, read from Redis counters (never a query per
organisation schema).
"""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse

from etl.scheduler_stats import scheduler_summary
from nexus.redis import get_redis


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception:  # any failure means "down"; the reason is for logs, not for callers
        return {"status": "down", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis_ping() -> None:
    get_redis().ping()


def health(request):
    checks = {"database": _timed(_database), "redis": _timed(_redis_ping)}
    if checks["database"]["status"] != "up":
        overall, status_code = "down", 503
    elif checks["redis"]["status"] != "up":
        overall, status_code = "degraded", 200
    else:
        overall, status_code = "ok", 200
    etl = scheduler_summary() if checks["redis"]["status"] == "up" else None
    body = {"status": overall, "checks": checks, "etl": etl}
    response = JsonResponse(body, status=status_code)
    response["Cache-Control"] = "no-store"
    return response


class HealthProbeMiddleware:
    """GET /health is answered here, before the Host header is checked against
    ALLOWED_HOSTS (CommonMiddleware): probes address the server by whatever name they have
    (a container's own health check asks 127.0.0.1, a load balancer its backend's address),
    and the answer is the same whatever the name, builds no URL from it, and is public
    anyway. Below the security headers, so the answer carries them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/health" and request.method in ("GET", "HEAD"):
            return health(request)
        return self.get_response(request)
