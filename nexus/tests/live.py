"""Processes the live tests start: a Celery worker (and, in tests/browser, a web server),
on this test process's database and queue."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def database_url() -> str:
    db = connections["default"].settings_dict
    host = quote(db.get("HOST") or "", safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}{port}/{db['NAME']}"


def live_env(extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nexus.settings_test",
        "DATABASE_URL": database_url(),
        "CELERY_TEST_QUEUE": settings.CELERY_TEST_QUEUE,
        **extra,
    }


class WorkerProcess:
    """A real `celery worker` in a subprocess, on this test process's database and queues:
    by default every queue (one worker does all the work), or only `queues` (kinds of
    CELERY_QUEUES_BY_KIND), as `make up` runs one worker per queue."""

    def __init__(
        self,
        extra_env: dict[str, str],
        *,
        queues: tuple[str, ...] | None = None,
        name: str = "",
        pool: str = "solo",
        concurrency: int = 1,
    ):
        self.extra_env = extra_env
        # "prefork" (one child, as in production) where time limits must be enforced: the
        # solo pool runs tasks in the worker's own process, which no limit can interrupt.
        self.pool = pool
        self.concurrency = concurrency
        self.queues = queues or tuple(settings.CELERY_QUEUES_BY_KIND)
        self.name = name or "all"
        self.process: subprocess.Popen | None = None
        self.log_path = ARTIFACTS / f"worker-{os.getpid()}-{self.name}.log"

    def start(self) -> None:
        env = live_env(self.extra_env)
        self.log_path.parent.mkdir(exist_ok=True)
        # The log is appended to across restarts: wait for this start's own "ready." line.
        self._ready_lines = self.log_path.read_bytes().count(b"ready.") if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nexus", "worker",
             "--pool", self.pool, "--concurrency", str(self.concurrency),
             "--queues", ",".join(settings.CELERY_QUEUES_BY_KIND[kind] for kind in self.queues),
             "--hostname", f"{self.name}-{os.getpid()}@%h",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path.exists() and self.log_path.read_bytes().count(b"ready.") > self._ready_lines:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited; see {self.log_path}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool's children at once, as when its machine dies."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def parallel_api_calls(token: str, call, count: int, *, timeout: float = 60) -> list:
    """Run `call(client)` in `count` threads released at the same moment, each with its
    own API client (and database connection) holding `token`; returns the results."""
    import threading

    from rest_framework.test import APIClient

    barrier = threading.Barrier(count)
    results: list = []
    lock = threading.Lock()

    def run():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            result = call(client)
            with lock:
                results.append(result)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn_server(extra_env: dict[str, str], *, log_name: str, threads: int = 2):
    """The app under gunicorn (the production server) with `live_env(extra_env)`; yields
    (host, port) once the port accepts connections (not /health: some tests run it with its
    database down) and stops it afterwards."""
    import socket

    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / f"web-{log_name}-{os.getpid()}.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "nexus.wsgi:application", "-c", "nexus/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", str(threads)],
            cwd=ROOT, env=live_env(extra_env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    assert time.monotonic() < deadline and process.poll() is None, "gunicorn did not start"
                    time.sleep(0.2)
            yield ("127.0.0.1", port)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
