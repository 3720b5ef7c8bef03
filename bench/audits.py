"""Batch audits: how fast an audit is created (parsed, written, reserved), how many items a
second one worker evaluates with the local provider, and, against the Gemini stand-in at a
set latency and a per-minute request quota, how much of the configured quota the shared
limiter uses and how many 429s it draws (target: at least 90 % used, none after the first).
"""

from __future__ import annotations

import io
import os
import subprocess  # nosec B404 - starts this project's own Celery worker
import sys
import time
import uuid

from bench.common import ROOT, bench_database_url, report, setup_django

ITEMS_LOCAL = 20_000
ITEMS_QUOTA = 4_000
QUOTA_RPM = 120  # the provider account's requests per minute (the stand-in enforces it)
CONFIGURED_RPM = 108  # quota x 60 / (60 + AUDIT_PROVIDER_BURST_SECONDS), rounded down: no minute overflows
LATENCY = 0.4  # seconds per provider call
MEASURE_SECONDS = 60  # a full minute of steady state


def _worker(queue: str, extra: dict[str, str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": bench_database_url(),
        "DJANGO_SETTINGS_MODULE": "nexus.settings",
        "LOG_LEVEL": "WARNING",
        "CELERY_QUEUE_PREFIX": f"{queue}.",
        **extra,
    }
    return subprocess.Popen(  # nosec B603
        [sys.executable, "-m", "celery", "-A", "nexus", "worker", "--pool", "prefork", "--concurrency", "4",
         "--loglevel", "WARNING", "--queues", f"{queue}.audits", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=_log(), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _log():
    """The worker's output: BENCH_WORKER_LOG names a file for it, else it is dropped."""
    path = os.environ.get("BENCH_WORKER_LOG")
    return open(path, "ab") if path else subprocess.DEVNULL


def _create(org, user, items: int, *, seed: int):
    from django_tenants.utils import tenant_context

    from audits import services
    from audits.inputs import parse_x_archive
    from audits.samples import x_archive_js

    archive = x_archive_js(items, seed=seed)
    started = time.perf_counter()
    with tenant_context(org):
        audit = services.audit_create(
            user=user,
            input_kind="x_archive",
            input_name="tweets.js",
            items=parse_x_archive(io.BytesIO(archive), max_items=200_000, max_item_chars=10_000),
            options=services.audit_criteria_check(criteria="Anything unprofessional", batch_size=20),
        )
    return audit, time.perf_counter() - started, len(archive)


def _done(org, audit_id) -> tuple[int, str]:
    from django_tenants.utils import tenant_context

    from audits.models import Audit

    with tenant_context(org):
        audit = Audit.objects.get(pk=audit_id)
        return audit.done, audit.status


def local_provider(org, user, queue: str) -> None:
    os.environ["GEMINI_API_KEY"] = ""
    from django.conf import settings

    settings.GEMINI_API_KEY = ""
    audit, created_s, size = _create(org, user, ITEMS_LOCAL, seed=1)
    report(
        "create (parse + COPY + reserve)",
        {"items": ITEMS_LOCAL, "mb": round(size / 1e6, 1), "seconds": round(created_s, 2),
         "items_per_s": round(ITEMS_LOCAL / created_s)},
    )  # fmt: skip
    worker = _worker(
        queue, {"GEMINI_API_KEY": "", "AUDIT_PROVIDER_RPM": "10000000", "AUDIT_PROVIDER_TPM": "10000000000"}
    )
    try:
        started, deadline = time.perf_counter(), time.monotonic() + 600
        while time.monotonic() < deadline:
            done, status = _done(org, audit.pk)
            if status == "completed":
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        report(
            "local provider, one worker (4 processes)", {"items": done, "items_per_s": round(done / elapsed)}
        )
    finally:
        worker.terminate()
        worker.wait(30)


def quota_use(org, user, queue: str) -> None:
    from django.conf import settings

    from nexus.tests.gemini_stub import GeminiStub

    with GeminiStub() as stub:
        stub.reset_audits()
        stub.audit_latency = LATENCY
        stub.limit_audit_rate(QUOTA_RPM, window_seconds=60)
        settings.GEMINI_API_KEY = "test-key"  # the key the stand-in accepts
        audit, _, _ = _create(org, user, ITEMS_QUOTA, seed=2)
        worker = _worker(
            queue,
            {
                "GEMINI_API_KEY": "test-key",
                "GEMINI_BASE_URL": stub.url,
                "AUDIT_PROVIDER_RPM": str(CONFIGURED_RPM),
                "AUDIT_PROVIDER_TPM": "100000000",
                "AUDIT_CONCURRENCY_INITIAL": "8",
                "AUDIT_CONCURRENCY_MAX": "8",
            },
        )
        try:
            time.sleep(10)  # warm-up: the worker starts and spends its burst
            before = len(stub.audit_requests)
            throttled_before = sum(1 for r in stub.audit_requests if r.status == 429)
            time.sleep(MEASURE_SECONDS)
            window = stub.audit_requests[before:]
            served = sum(1 for r in window if r.status == 200)
            throttled = sum(1 for r in window if r.status == 429)
            done, _ = _done(org, audit.pk)
            report(
                f"Gemini stand-in, {LATENCY} s a call, quota {QUOTA_RPM}/min (configured {CONFIGURED_RPM})",
                {
                    "requests_per_min": served,
                    "share_of_configured": f"{100 * served / CONFIGURED_RPM:.0f}%",
                    "429s_in_window": throttled,
                    "429s_during_warmup": throttled_before,
                    "items_done": done,
                },
            )
        finally:
            worker.terminate()
            worker.wait(30)


def main() -> None:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ["CELERY_QUEUE_PREFIX"] = f"{queue}."  # what this process sends, its worker takes
    setup_django()
    from django_tenants.utils import tenant_context

    from billing.services import credits_grant
    from tenants.models import Role
    from tenants.services import organisation_create, user_create

    org = organisation_create(name="Bench Audits", email_domain="bench-audits.example")
    user = user_create(email="bench@bench-audits.example", organisation=org, role=Role.ADMIN)
    with tenant_context(org):
        credits_grant(amount=1_000_000, reason="benchmark", actor_label="operator:bench")
    if os.environ.get("BENCH_AUDITS_ONLY") != "quota":
        local_provider(org, user, queue)
    quota_use(org, user, queue)


if __name__ == "__main__":
    main()
