"""One organisation's pathological source cannot starve another organisation: performed with
real worker processes, one per queue as `make up` runs them, against a local API that never
ends and a source paced at the slowest pace allowed."""

import itertools
import time

import pytest
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from etl.mock_api import MockApi
from etl.models import EtlRun
from etl.samples import sample_source_create
from etl.services import etl_source_create
from etl.tests.conftest import API_MAPPING, CSV_MAPPING
from jobs.models import Job
from nexus.tests.live import WorkerProcess
from tenants.tests.helpers import bearer_for

SLICE_SECONDS = 2
WORKER_ENV = {"ETL_SLICE_SECONDS": str(SLICE_SECONDS), "ETL_SLICE_PAGES": "3"}


def _client(org) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(org.admin)}")
    return client


def _wait(read, done, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"still {value!r} after {timeout} s")


@pytest.fixture
def queue_workers(live_db):
    workers = [WorkerProcess(WORKER_ENV, queues=(kind,), name=kind) for kind in ("jobs", "etl")]
    try:
        for worker in workers:
            worker.start()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def test_a_slow_endless_source_of_one_organisation_does_not_delay_another(
    live_org, other_live_org, queue_workers
):
    hostile, victim = other_live_org, live_org
    victim.grant(100)
    with MockApi(api_key="test-key", items=20_000) as endless:
        with tenant_context(hostile):
            slow = etl_source_create(
                name="Endless",
                kind="api",
                config={"url": endless.url, "page_size": 1, "max_pages": 10_000},
                field_mapping=API_MAPPING,
                api_key="test-key",
                requests_per_second=0.2,  # the slowest pace allowed: 10,000 pages take 14 hours
            )
        assert _client(hostile).post(f"/api/v1/etl/sources/{slow.pk}/run").status_code == 202
        _wait(lambda: len(endless.requests), lambda n: n >= 1, timeout=30)

        # The victim's AI job is answered at once: its queue has its own worker.
        started = time.monotonic()
        response = _client(victim).post("/api/v1/summarize", {"text": "Fairness matters."}, format="json")
        job_id = response.json()["data"]["id"]

        def job_status():
            with tenant_context(victim):
                return Job.objects.get(pk=job_id).status

        assert _wait(job_status, lambda s: s in ("completed", "failed"), timeout=10) == "completed"
        assert time.monotonic() - started < 5

        # The victim's ETL run shares the one ETL worker, yet waits at most one slice of the
        # hostile run (its slice time plus one paced request), not the hostile run's hours.
        with tenant_context(victim):
            csv = sample_source_create(
                name="Articles", kind="csv", sample="articles.csv", field_mapping=CSV_MAPPING
            )
        started = time.monotonic()
        run_id = _client(victim).post(f"/api/v1/etl/sources/{csv.pk}/run").json()["data"]["run_id"]

        def victim_run():
            with tenant_context(victim):
                return EtlRun.objects.get(pk=run_id)

        run = _wait(victim_run, lambda r: r.status in ("succeeded", "failed"), timeout=30)
        assert run.status == "succeeded"
        assert run.inserted == 7
        assert time.monotonic() - started < SLICE_SECONDS + 5 + 5  # a slice, a paced request, slack

        # Meanwhile the hostile run goes on, slice after slice, at its own pace.
        def hostile_run():
            with tenant_context(hostile):
                return EtlRun.objects.get(source=slow)

        endless_run = _wait(hostile_run, lambda r: r.slices >= 2, timeout=30)
        assert endless_run.status in ("queued", "running")
        assert endless_run.finished_at is None
        times = [r["at"] for r in list(endless.requests)]
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
        assert gaps
        assert min(gaps) >= 4.5  # 0.2 requests/s, also from one slice to the next


def test_a_slice_stopped_at_its_soft_time_limit_fails_the_run_cleanly_and_frees_the_worker(live_org):
    """Performed on a prefork worker (as in production) whose slices have a one-second soft
    limit. The first slice carries the limit of the process that queued the run (this one's,
    ten minutes) and ends after two pages; the worker queues the second slice with its own
    limit, and that slice is stopped while it waits for its second page."""
    worker = WorkerProcess(
        {"ETL_SLICE_TIME_LIMIT": "1", "ETL_SLICE_SECONDS": "100", "ETL_SLICE_PAGES": "2"},
        queues=("etl",),
        name="etl-limit",
        pool="prefork",
    )
    worker.start()
    try:
        with MockApi(api_key="test-key", items=20_000) as endless:
            with tenant_context(live_org):
                slow = etl_source_create(
                    name="Endless",
                    kind="api",
                    config={"url": endless.url, "page_size": 1},
                    field_mapping=API_MAPPING,
                    api_key="test-key",
                    requests_per_second=0.2,
                )
            run_id = _client(live_org).post(f"/api/v1/etl/sources/{slow.pk}/run").json()["data"]["run_id"]

            stopped = _wait(
                lambda: _get_run(live_org, run_id), lambda r: r.status in ("succeeded", "failed"), timeout=30
            )
            assert stopped.status == "failed"
            assert (
                stopped.error
                == "The run stopped at its time limit; the next run resumes from the checkpoint."
            )
            # What the first slice committed stays; the second slice's page was not committed.
            assert (stopped.fetched, stopped.slices) == (2, 1)
            assert stopped.checkpoint_after["page"] == 3
            # The stream stopped with the slice: at most the request in flight was made.
            time.sleep(6)
            assert len(endless.requests) <= 4

            # The worker is free again: the next run is taken at once.
            with tenant_context(live_org):
                csv = sample_source_create(
                    name="Articles", kind="csv", sample="articles.csv", field_mapping=CSV_MAPPING
                )
            next_id = _client(live_org).post(f"/api/v1/etl/sources/{csv.pk}/run").json()["data"]["run_id"]
            finished = _wait(
                lambda: _get_run(live_org, next_id), lambda r: r.status in ("succeeded", "failed"), timeout=15
            )
            assert finished.status == "succeeded"
    finally:
        worker.stop()


def _get_run(org, run_id):
    with tenant_context(org):
        return EtlRun.objects.get(pk=run_id)
