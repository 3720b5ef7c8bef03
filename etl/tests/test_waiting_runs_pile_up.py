"""A run that finds no free run slot of its organisation stays `queued` and re-sends itself
every ETL_SLOT_RETRY_SECONDS, with no end. etl_run_queue only counts a queued run as
waiting for 10 minutes from its creation (`started_at`), or from its last slice
(`slice_queued_at`, unset until a slice ran). So while an organisation keeps its slots busy
(two long runs), each of its other due sources gains another waiting run every 10 minutes
from the scheduler, and every one of them keeps re-sending itself to the shared etl queue:
the number of tasks the etl workers process grows with time, for everyone. A source must
have at most one queued run."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from etl.models import EtlRun, RunStatus
from etl.services import _slot_key, etl_run_queue, etl_run_slice, etl_source_create
from etl.tests.conftest import CSV_MAPPING
from nexus.api.errors import Conflict

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_slots(world):
    """Organisation A's only run slot held by another database session (a worker running a
    long slice)."""
    org = world.org_a
    org.max_concurrent_runs = 1
    org.save(update_fields=["max_concurrent_runs"])
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = psycopg.connect(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")}
    )
    with tenant_context(org):
        key = _slot_key(0)
    other.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
    yield
    other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
    other.close()


def test_a_source_never_has_more_than_one_queued_run(world, files, busy_slots):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles", kind="csv", config={"path": "articles.csv"}, field_mapping=CSV_MAPPING
        )
        first = etl_run_queue(source=source, trigger="schedule")
        # Its task arrives: no slot, so it stays queued (and re-sends itself in 5 s).
        assert etl_run_slice(run=first).status == RunStatus.QUEUED
        # Ten minutes of waiting later the scheduler finds the source due again.
        EtlRun.objects.filter(pk=first.pk).update(started_at=timezone.now() - timedelta(minutes=11))
        assert EtlRun.objects.get(pk=first.pk).status == RunStatus.QUEUED
        with contextlib.suppress(Conflict):
            etl_run_queue(source=source, trigger="schedule")
        queued = EtlRun.objects.filter(source=source, status=RunStatus.QUEUED).count()
    assert queued == 1, f"{queued} runs of one source are queued, each re-sending itself forever"


def test_a_run_that_never_gets_a_slot_fails_after_the_wait_limit(world, files, busy_slots, settings):
    settings.ETL_SLOT_WAIT_SECONDS = 60
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles", kind="csv", config={"path": "articles.csv"}, field_mapping=CSV_MAPPING
        )
        run = etl_run_queue(source=source, trigger="schedule")
        EtlRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(seconds=61))
        waited = etl_run_slice(run=EtlRun.objects.get(pk=run.pk))
        assert waited.status == RunStatus.FAILED
        assert waited.error.startswith("The run waited too long for one of the organisation's run slots")
        # The schedule may queue the next run at once.
        assert etl_run_queue(source=source, trigger="schedule").status == RunStatus.QUEUED
