"""What a Prometheus scrape costs as organisations grow: the scrape-time read of the job
backlog, workers and disabled endpoints is one statement across every organisation's
schema (nexus.crossschema), timed here with 10, 100 and 300 organisations, each with a few
pending and finished jobs. Also the whole GET /metrics answer (counters included)."""

from __future__ import annotations

import time

from bench.common import percentiles, report, setup_django

SIZES = (10, 100, 300)
REPEAT = 30


def _organisations_up_to(count: int, have: int) -> None:
    from django_tenants.utils import tenant_context

    from billing.services import credits_grant
    from jobs.models import Job, JobStatus
    from tenants.services import organisation_create, user_create

    for i in range(have, count):
        org = organisation_create(name=f"Bench Scrape {i}", email_domain=f"scrape-{i}.bench")
        user = user_create(email=f"admin@scrape-{i}.bench", organisation=org, role="admin")
        with tenant_context(org):
            credits_grant(amount=100, reason="bench", actor_label="operator:bench")
            for status in (JobStatus.PENDING, JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED):
                Job.objects.create(
                    user=user, job_type="summarize", status=status, input={"text": "x"}, cost=1,
                    max_attempts=3, provider="local",
                    completed_at=time_now() if status == JobStatus.COMPLETED else None,
                    failed_at=time_now() if status == JobStatus.FAILED else None,
                )  # fmt: skip


def time_now():
    from django.utils import timezone

    return timezone.now()


def main() -> None:
    setup_django()
    from django.conf import settings
    from django.test import Client

    from nexus import metrics

    settings.METRICS_TOKEN = "bench"
    settings.METRICS_LIVE_CACHE_SECONDS = 0
    client = Client()
    have = 0
    for size in SIZES:
        _organisations_up_to(size, have)
        have = size
        metrics._take_snapshot()  # warm
        reads, scrapes = [], []
        for _ in range(REPEAT):
            started = time.perf_counter()
            metrics._take_snapshot()
            reads.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            client.get("/metrics", HTTP_AUTHORIZATION="Bearer bench", HTTP_HOST="localhost")
            scrapes.append((time.perf_counter() - started) * 1000)
        report(f"scrape-time read, {size} organisations, ms", percentiles(reads))
        report(f"GET /metrics, {size} organisations, ms", percentiles(scrapes))


if __name__ == "__main__":
    main()
