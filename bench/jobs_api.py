"""POST /api/v1/summarize latency on a running gunicorn server at concurrency 1, 8 and 32,
then how many jobs per second one Celery worker (local provider) completes.

Runs against a throwaway database (nexus_bench) and its own Redis queue.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess  # nosec B404 - starts this project's own server and worker
import sys
import threading
import time
import uuid

from bench.common import ROOT, bench_database_url, percentiles, report, setup_django

REQUESTS_PER_LEVEL = {1: 200, 8: 800, 32: 1600}
BENCH_SECRET_KEY = "bench-only-secret-key-not-for-production"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": bench_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "SECRET_KEY": BENCH_SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "nexus.settings",
        "LOG_LEVEL": "WARNING",
        "CELERY_QUEUE_PREFIX": f"{queue}.",
        "GEMINI_API_KEY": "",
    }


@contextlib.contextmanager
def running_server():
    """gunicorn (4 workers x 8 threads) on a free port, with the benchmark's environment."""
    port = _free_port()
    server = subprocess.Popen(  # nosec B603
        [sys.executable, "-m", "gunicorn", "nexus.wsgi:application", "-c", "nexus/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}", "--workers", "4", "--threads", "8"],
        cwd=ROOT, env=_env(os.environ["CELERY_QUEUE_PREFIX"].rstrip(".")),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_http(port)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _wait_http(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def _load(port: int, token: str, concurrency: int, total: int) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    per_thread = total // concurrency
    body = json.dumps({"text": "Benchmarks measure. " * 20})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local, codes = [], {}
        for _ in range(per_thread):
            started = time.perf_counter()
            conn.request("POST", "/api/v1/summarize", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            local.append((time.perf_counter() - started) * 1000)
            codes[response.status] = codes.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(local)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses


def measure(port: int, token: str, levels: dict[int, int], label: str) -> None:
    """Warm every gunicorn worker up, then report latency per concurrency level."""
    _load(port, token, 4, 40)
    for concurrency, total in levels.items():
        started = time.perf_counter()
        latencies, statuses = _load(port, token, concurrency, total)
        elapsed = time.perf_counter() - started
        report(
            f"{label}, concurrency {concurrency}, ms",
            {**percentiles(latencies), "req_per_s": round(len(latencies) / elapsed, 1), "statuses": statuses},
        )


def main() -> None:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ["CELERY_QUEUE_PREFIX"] = f"{queue}."
    os.environ["SECRET_KEY"] = BENCH_SECRET_KEY  # tokens minted here must verify on the server
    setup_django()
    from django_tenants.utils import tenant_context

    from billing.services import credits_grant
    from jobs.models import Job, JobStatus
    from tenants.models import Role
    from tenants.services import organisation_create, user_create
    from tenants.tests.helpers import bearer_for

    org = organisation_create(name="Bench Org", email_domain="bench.example")
    # The limiter still runs on every request (its cost is measured); it just never refuses.
    org.api_rate_limit = 10_000_000
    org.save(update_fields=["api_rate_limit"])
    user = user_create(email="bench@bench.example", organisation=org, role=Role.ADMIN)
    with tenant_context(org):
        credits_grant(amount=1_000_000, reason="benchmark", actor_label="operator:bench")
    token = bearer_for(user)

    with running_server() as port:
        measure(port, token, REQUESTS_PER_LEVEL, "POST /api/v1/summarize")

    with tenant_context(org):
        pending = Job.objects.filter(status=JobStatus.PENDING).count()
    worker = subprocess.Popen(  # nosec B603
        [sys.executable, "-m", "celery", "-A", "nexus", "worker", "--pool", "solo", "--loglevel", "WARNING",
         "--queues", f"{queue}.jobs", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=_env(queue), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first_done = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with tenant_context(org):
                done = Job.objects.filter(status=JobStatus.COMPLETED).count()
            if done and first_done is None:
                first_done = (time.perf_counter(), done)
            if done >= pending:
                break
            time.sleep(0.2)
        finished = time.perf_counter()
        if first_done:
            start_time, start_count = first_done
            rate = (done - start_count) / max(finished - start_time, 1e-9)
            report("one worker (solo pool, local provider)", {"jobs": done, "jobs_per_s": round(rate, 1)})
    finally:
        worker.terminate()
        worker.wait(10)


if __name__ == "__main__":
    main()
