"""The fault suite's system: the app under gunicorn, one Celery worker per queue and beat,
as `make up` runs them, on the suite's own embedded PostgreSQL and Redis (see servers.py),
which the scenarios stop and start. Scenarios speak to it over HTTP, as clients do, and
check the database afterwards: nothing lost, nothing counted twice."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.db import connection, connections
from django_tenants.utils import tenant_context

from billing.selectors import credits_balance, credits_ledger_sum
from nexus.tests.live import ARTIFACTS, ROOT, WorkerProcess, gunicorn_server, live_env
from tenants.tests.helpers import bearer_for
from tests.faults.servers import Servers

REPORT_ENV = "NEXUS_FAULT_REPORT"
TEXT = "The product launch went well. Customers praised the speed. Support tickets fell sharply."


@pytest.fixture(scope="session")
def servers() -> Servers:
    found = Servers.from_env()
    if found is None:
        pytest.fail("the fault suite stops its servers: run it with `make test-faults`, which starts its own")
    # Never the shared servers: the database this process uses must be the suite's own.
    host = str(connection.settings_dict.get("HOST") or "")
    assert host == str(found.postgres._socket_dir()), f"not the suite's own PostgreSQL: {host!r}"
    assert found.redis.url == settings.REDIS_URL, "not the suite's own Redis"
    return found


@pytest.fixture
def report(request):
    """report(**numbers): the scenario's measurements, printed by scripts/run_faults.py."""

    def write(**numbers) -> None:
        line = json.dumps({"scenario": request.node.name, "numbers": numbers})
        print(line)
        path = os.environ.get(REPORT_ENV)
        if path:
            with open(path, "a") as out:
                out.write(line + "\n")

    return write


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: dict | None

    @property
    def code(self) -> str | None:
        return ((self.body or {}).get("error") or {}).get("code")


@dataclass
class Api:
    base: str
    token: str

    def call(
        self, method: str, path: str, body=None, *, headers: dict | None = None, timeout: float = 15
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # nosec B310
                status, raw, got = answer.status, answer.read(), dict(answer.headers)
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), dict(error.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = {"raw": raw[:200].decode(errors="replace")}
        return Response(status, got, parsed)

    def summarize(self, text: str = TEXT, *, key: str | None = None) -> Response:
        return self.call(
            "POST", "/api/v1/summarize", {"text": text}, headers={"Idempotency-Key": key or uuid.uuid4().hex}
        )


class Beat:
    """celery beat with the production schedule (the sweeps every few seconds)."""

    def __init__(self, extra_env: dict[str, str]):
        self.extra_env = extra_env
        self.log_path = ARTIFACTS / f"beat-{os.getpid()}.log"
        self.process: subprocess.Popen | None = None

    def start(self, schedule_dir) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "nexus", "beat", "--loglevel", "INFO",
             "--schedule", str(schedule_dir / "celerybeat-schedule")],
            cwd=ROOT, env=live_env(self.extra_env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class System:
    api_base: str
    workers: dict[str, WorkerProcess]
    beat: Beat
    extra_env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)

    def api(self, user) -> Api:
        return Api(self.api_base, bearer_for(user))

    def restart_worker(self, kind: str) -> None:
        self.workers[kind].start()


# One worker per queue as `make up` runs them (prefork, 2 processes for jobs and ETL), the
# production heartbeat and sweep periods and the production retry delays of jobs and webhooks.
WORKER_CONCURRENCY = {"jobs": 2, "webhooks": 1, "etl": 1, "audits": 2, "periodic": 1}


@pytest.fixture
def system(servers, live_db, gemini_stub, tmp_path):
    env = {
        "GEMINI_API_KEY": "test-key",
        "GEMINI_BASE_URL": gemini_stub.url,
        "JOB_PROVIDER_TIMEOUT_SECONDS": "10",
        "JOB_RETRY_DELAY_SECONDS": "5",
        "WEBHOOK_RETRY_DELAYS": "5,25,125",
        "LOG_LEVEL": "INFO",
    }
    workers = {
        kind: WorkerProcess(env, queues=(kind,), name=f"{kind}", pool="prefork", concurrency=concurrency)
        for kind, concurrency in WORKER_CONCURRENCY.items()
    }
    beat = Beat(env)
    with gunicorn_server(env, log_name="faults", threads=8) as (host, port):
        started = []
        try:
            for worker in workers.values():
                worker.start()
                started.append(worker)
            beat.start(tmp_path)
            system = System(f"http://{host}:{port}", workers, beat, env)
            system.pids = {kind: worker.process.pid for kind, worker in workers.items()}
            yield system
        finally:
            beat.stop()
            for worker in started:
                worker.stop()
    connections.close_all()


def wait_for(check, *, timeout: float, every: float = 0.2, what: str = "condition", explain=None):
    """Poll `check()` until it returns something truthy (returned); bounded by `timeout`.
    On timeout, `explain()` (if given) says what the system looked like, for the report."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            state = ""
            if explain is not None:
                try:
                    state = f"; state: {explain()}"
                except Exception as exc:  # the explanation must not hide the timeout
                    state = f"; state unavailable ({type(exc).__name__})"
            raise AssertionError(f"{what} not reached after {timeout} s{state}")
        connections.close_all()  # a connection cut by an outage is opened again next time
        time.sleep(every)


def job_states(org) -> dict:
    """How the organisation's jobs stand: counts by status, attempts, queued or not, and
    the last lines of the jobs worker's log (what a timed-out wait prints)."""
    from jobs.models import Job

    with tenant_context(org):
        jobs = list(Job.objects.values("status", "attempt_count", "enqueued_at", "worker"))
    counts: dict[str, int] = {}
    for job in jobs:
        key = f"{job['status']}/attempts={job['attempt_count']}/queued={job['enqueued_at'] is not None}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def worker_log_tail(kind: str, lines: int = 15) -> str:
    logs = sorted(ARTIFACTS.glob(f"worker-{os.getpid()}-{kind}.log"))
    if not logs:
        return "(no log)"
    return " | ".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])


def assert_balance_equals_ledger(org, expected: int) -> None:
    with tenant_context(org):
        assert credits_balance() == expected == credits_ledger_sum()


class Load:
    """Background API traffic: `call(api)` every `period` seconds in `threads` threads,
    recording (time, status, code) of each answer until stopped."""

    def __init__(self, api: Api, call, *, threads: int = 2, period: float = 0.25):
        self.api, self.call, self.period = api, call, period
        self.answers: list[tuple[float, int, str | None, Response]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.call(self.api)
            except OSError as error:  # the server did not answer at all
                response = Response(0, {}, {"raw": type(error).__name__})
            self.answers.append((time.monotonic(), response.status, response.code, response))
            self._stop.wait(self.period)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
