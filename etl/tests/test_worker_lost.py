"""A run left `running` by a worker that died is failed by the frequent sweep, with the
time it stopped, and the next run of its source is a resume."""

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context

from etl.mock_api import MockApi
from etl.models import EtlRun, Record, RunStatus
from etl.services import etl_run_queue, etl_runs_sweep
from etl.tests.factories import api_source_create
from tenants.models import WorkerHeartbeat


def _source(url: str, **extra):
    return api_source_create(url=url, config={"page_size": 10}, api_key="test-key", **extra)


@pytest.mark.django_db
def test_a_running_run_whose_lock_is_free_is_failed_at_its_workers_last_heartbeat(org_a, mock_api, broker):
    source = _source(mock_api.url)
    stopped_at = timezone.now() - timedelta(seconds=12)
    with schema_context("public"):
        WorkerHeartbeat.objects.create(name="etl@host#1", beat_at=stopped_at)
    run = EtlRun.objects.create(
        source=source, trigger="manual", status=RunStatus.RUNNING, worker="etl@host#1"
    )
    EtlRun.objects.filter(pk=run.pk).update(started_at=stopped_at - timedelta(seconds=30))

    assert etl_runs_sweep() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.finished_at == stopped_at
    assert run.error.startswith("The worker running it stopped")
    assert run.duration_ms == 30_000
    assert etl_runs_sweep() == 0
    assert etl_run_queue(source=source, trigger="manual").trigger == "resume"


def test_a_run_whose_worker_holds_the_lock_is_left_alone(live_org, mock_api):
    with tenant_context(live_org):
        source = _source(mock_api.url)
        EtlRun.objects.create(source=source, trigger="manual", status=RunStatus.RUNNING)
        key = f"etl:{live_org.schema_name}:{source.pk}"
    held, release = threading.Event(), threading.Event()

    def worker_session():  # another database session holding the source's lock, as a live run does
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
            held.set()
            release.wait(10)
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
        connections.close_all()

    thread = threading.Thread(target=worker_session)
    thread.start()
    try:
        assert held.wait(10)
        with tenant_context(live_org):
            assert etl_runs_sweep() == 0
            assert EtlRun.objects.get(source=source).status == RunStatus.RUNNING
    finally:
        release.set()
        thread.join(10)


def test_a_run_killed_with_its_worker_is_failed_within_30_seconds_and_resumed(live_org, celery_worker):
    celery_worker.stop()
    celery_worker.extra_env = {**celery_worker.extra_env, "WORKER_HEARTBEAT_SECONDS": "1"}
    celery_worker.start()
    with MockApi(api_key="test-key", items=250) as api, tenant_context(live_org):
        source = _source(api.url, requests_per_second=2)  # 25 pages: about 12 s of fetching
        first = etl_run_queue(source=source, trigger="manual")
        deadline = time.monotonic() + 30
        while EtlRun.objects.get(pk=first.pk).status != RunStatus.RUNNING:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        time.sleep(2)  # some pages into the run
        celery_worker.kill()
        killed_at = timezone.now()
        started = time.monotonic()

        deadline = started + 40
        while EtlRun.objects.get(pk=first.pk).status == RunStatus.RUNNING:
            assert time.monotonic() < deadline, "the killed run is still running"
            etl_runs_sweep()
            time.sleep(django_settings.JOB_SWEEP_SECONDS)
        recovery = time.monotonic() - started
        first.refresh_from_db()
        print(f"killed run marked failed after {recovery:.1f} s")
        assert recovery <= 30
        assert first.status == RunStatus.FAILED
        assert "worker running it stopped" in first.error
        # Stopped at the worker's last heartbeat: just before the kill, never after it.
        assert killed_at - timedelta(seconds=3) <= first.finished_at <= killed_at + timedelta(seconds=1)

        celery_worker.start()
        second = etl_run_queue(source=source, trigger="manual")
        assert second.trigger == "resume"
        deadline = time.monotonic() + 60
        while EtlRun.objects.get(pk=second.pk).status not in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            assert time.monotonic() < deadline, "the resumed run did not finish"
            time.sleep(0.2)
        second.refresh_from_db()
        assert second.status == RunStatus.SUCCEEDED, second.error
        assert Record.objects.filter(source=source).count() == 250
        assert EtlRun.objects.filter(source=source, status=RunStatus.RUNNING).count() == 0
