"""Latency of a cache-hit POST /api/v1/summarize on a running server (target p99 < 50 ms,
aim < 10 ms): the job is completed once, then the identical text is posted again."""

from __future__ import annotations

import os
import uuid

from bench.common import setup_django
from bench.jobs_api import BENCH_SECRET_KEY, measure, running_server

TEXT = "Benchmarks measure. " * 20  # the text bench.jobs_api._load posts


def main() -> None:
    os.environ["CELERY_QUEUE_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}."
    os.environ["SECRET_KEY"] = BENCH_SECRET_KEY
    os.environ["CACHE_KEY_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
    setup_django()
    from django_tenants.utils import tenant_context

    from billing.services import credits_grant
    from jobs import services, tasks
    from tenants.models import Role
    from tenants.services import organisation_create, user_create
    from tenants.tests.helpers import bearer_for

    org = organisation_create(name="Cache Bench", email_domain="cache-bench.example")
    org.api_rate_limit = 10_000_000  # the limiter runs, but never refuses
    org.save(update_fields=["api_rate_limit"])
    user = user_create(email="bench@cache-bench.example", organisation=org, role=Role.ADMIN)
    with tenant_context(org):
        credits_grant(amount=1000, reason="benchmark", actor_label="operator:bench")
        job = services.job_create(user=user, job_type="summarize", text=TEXT)
        tasks.run_job(str(job.pk))  # completes and stores the result in the cache

    with running_server() as port:
        measure(port, bearer_for(user), {1: 300, 8: 800}, "cache-hit POST /api/v1/summarize")


if __name__ == "__main__":
    main()
