"""Runs in bounded slices: each slice commits its checkpoint and the same run continues from
it, so a run of any length never holds a worker for long, and the result is exactly that of
one uninterrupted run. An organisation's runs beyond its concurrent-runs cap wait queued."""

import psycopg
import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from etl import tasks
from etl.mock_api import MockApi
from etl.models import DriftEvent, EtlRun, QuarantinedItem, RawApiRecord, Record
from etl.services import etl_run_queue, etl_run_slice, etl_run_source, etl_source_create
from etl.tests.conftest import CSV_MAPPING
from etl.tests.factories import api_source_create
from nexus.api.errors import Conflict
from tenants.models import Organisation

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(broker):
    """Continuations handed to the broker: (run id, countdown), recorded at the broker edge."""
    return broker.watch("etl.execute_run", lambda message: (message.args[0], message.countdown))


def _api_source(url, **config):
    return api_source_create(
        url=url,
        name="Items",
        config={"page_size": 100, **config},
        api_key="test-key",
        requests_per_second=100,
    )


def test_a_run_in_one_page_slices_stores_exactly_what_one_run_does(org_a, mock_api, settings):
    settings.ETL_SLICE_PAGES = 1
    source = _api_source(mock_api.url)
    run = etl_run_source(source=source)
    assert (run.status, run.slices, run.fetched, run.inserted, run.updated, run.skipped) == (
        "succeeded",
        3,
        250,
        250,
        0,
        0,
    )
    # Each page fetched once: a slice stops between pages, and the next starts at the next page.
    assert [r["query"]["page"] for r in mock_api.requests] == ["1", "2", "3"]
    assert RawApiRecord.objects.filter(source=source).count() == 250
    assert Record.objects.filter(source=source).count() == 250
    assert run.checkpoint_before == {}
    assert run.checkpoint_after == {"updated_since": "2026-01-01T04:10:00+00:00", "page": 1, "offset": 0}
    mock_api.requests.clear()
    again = etl_run_source(source=source)
    assert (again.inserted, again.updated, again.slices) == (0, 0, 1)
    assert mock_api.requests[0]["query"]["updated_since"] == "2026-01-01T04:10:00+00:00"


def test_a_csv_run_cut_after_every_item_stores_the_same_records(org_a, files, settings):
    settings.ETL_SLICE_SECONDS = 0  # the time bound: every slice stops after its first item
    source = etl_source_create(
        name="Articles",
        kind="csv",
        config={"path": "articles.csv"},
        field_mapping=CSV_MAPPING,
        requests_per_second=100,
    )
    run = etl_run_source(source=source)
    assert run.status == "succeeded", run.error
    # As at any batch boundary, the revised A-003 of a later slice is an update of the one
    # an earlier slice inserted (in one batch only the revision is kept): same records.
    assert (run.fetched, run.inserted, run.updated, run.skipped, run.quarantined) == (12, 7, 1, 1, 3)
    assert Record.objects.get(external_id="A-003").title == "Support trends (revised)"
    assert run.slices == 13  # twelve items one by one, then the slice that finds the end
    assert Record.objects.filter(source=source).count() == 7
    assert QuarantinedItem.objects.filter(run=run).count() == 3
    new_fields = list(DriftEvent.objects.filter(run=run, kind="new").values_list("field", flat=True))
    assert new_fields == ["Page Views"]  # reported once for the run, not once per slice
    assert run.checkpoint_after["complete"] is True


def test_drift_is_reported_once_per_run_across_its_slices(org_a, settings):
    settings.ETL_SLICE_PAGES = 1
    with MockApi(api_key="test-key", items=20, renames={"title": "item_title", "author": "writer"}) as api:
        run = etl_run_source(source=_api_source(api.url, page_size=5))
    assert run.status == "succeeded"
    assert run.slices == 4
    assert run.inserted == 20
    kinds = sorted(DriftEvent.objects.filter(run=run).values_list("kind", "field"))
    assert kinds == [("missing", "author"), ("new", "score"), ("new", "writer"), ("renamed", "title")]
    assert run.drift_warnings == 4


def test_a_worker_slice_requeues_the_same_run_which_continues_from_its_checkpoint(
    org_a, mock_api, settings, sent, django_capture_on_commit_callbacks
):
    settings.ETL_SLICE_PAGES = 1
    source = _api_source(mock_api.url)
    run = EtlRun.objects.create(source=source, trigger="manual")
    with django_capture_on_commit_callbacks(execute=True):
        run = etl_run_slice(run=run)
    assert (run.status, run.slices, run.fetched) == ("queued", 1, 100)
    assert run.slice_queued_at is not None
    assert run.finished_at is None
    assert sent == [(str(run.pk), 0.01)]  # again, one interval of the source's pace later
    # Between its slices the run is queued: no second run of the source can be added.
    with pytest.raises(Conflict) as conflict:
        etl_run_queue(source=source, trigger="manual")
    assert conflict.value.details == {"reason": "queued"}
    while run.status == "queued":
        with django_capture_on_commit_callbacks(execute=True):
            run = etl_run_slice(run=EtlRun.objects.get(pk=run.pk))
    assert (run.status, run.slices, run.fetched, run.inserted) == ("succeeded", 3, 250, 250)
    assert run.checkpoint_before == {}  # where the run started, not where its last slice did
    assert EtlRun.objects.count() == 1
    assert len(sent) == 2


def test_a_failure_in_a_later_slice_keeps_what_earlier_slices_committed(org_a, mock_api, settings):
    settings.ETL_SLICE_PAGES = 1
    settings.ETL_HTTP_RETRIES = 0
    source = _api_source(mock_api.url)
    run = etl_run_source(source=source, one_slice=True)
    assert run.status == "queued"
    assert Record.objects.count() == 100
    mock_api.scripted = [503]
    run = etl_run_source(source=source, run=EtlRun.objects.get(pk=run.pk), one_slice=True)
    assert run.status == "failed"
    assert run.fetched == 100
    assert "HTTP 503" in run.error
    resumed = etl_run_source(source=source)
    assert (resumed.trigger, resumed.status, resumed.inserted) == ("resume", "succeeded", 150)
    assert Record.objects.count() == 250


def _hold(key: str) -> psycopg.Connection:
    db = connection.settings_dict
    holder = psycopg.connect(
        host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"], dbname=db["NAME"], autocommit=True
    )
    holder.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
    return holder


def test_a_run_over_the_concurrent_runs_cap_waits_queued_then_runs(
    world, files, sent, django_capture_on_commit_callbacks
):
    Organisation.objects.filter(pk=world.org_a.pk).update(max_concurrent_runs=1)
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles",
            kind="csv",
            config={"path": "articles.csv"},
            field_mapping=CSV_MAPPING,
        )
        run = EtlRun.objects.create(source=source, trigger="manual")
        # Another run of the organisation holds its only slot (on another connection).
        holder = _hold(f"etl-slot:{world.org_a.schema_name}:0")
        try:
            with django_capture_on_commit_callbacks(execute=True):
                waiting = etl_run_slice(run=run)
            assert waiting.status == "queued"
            assert waiting.slices == 0
            assert EtlRun.objects.get(pk=run.pk).status == "queued"
            assert sent == [(str(run.pk), 5.0)]  # ETL_SLOT_RETRY_SECONDS
            # Another organisation's slots are its own.
            with tenant_context(world.org_b):
                other = etl_source_create(
                    name="B",
                    kind="csv",
                    config={"path": "articles.csv"},
                    field_mapping=CSV_MAPPING,
                )
                assert (
                    etl_run_slice(run=EtlRun.objects.create(source=other, trigger="manual")).status
                    == "succeeded"
                )
        finally:
            # That run's worker ends: its slot is free. Unlocked before the close, which
            # returns before the server has ended the session (and let go of its locks).
            holder.execute("SELECT pg_advisory_unlock_all()")
            holder.close()
        assert etl_run_slice(run=EtlRun.objects.get(pk=run.pk)).status == "succeeded"


def test_the_slot_of_a_run_is_free_again_after_it(world, files):
    Organisation.objects.filter(pk=world.org_a.pk).update(max_concurrent_runs=1)
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Articles",
            kind="csv",
            config={"path": "articles.csv"},
            field_mapping=CSV_MAPPING,
        )
        for _ in range(2):
            assert (
                etl_run_slice(run=EtlRun.objects.create(source=source, trigger="manual")).status
                == "succeeded"
            )


def test_a_run_whose_next_slice_was_lost_is_superseded_by_the_next_run(org_a, mock_api, settings):
    settings.ETL_SLICE_PAGES = 1
    source = _api_source(mock_api.url)
    lost = etl_run_source(source=source, one_slice=True)  # its continuation never reaches a worker
    assert lost.status == "queued"
    later = etl_run_source(source=source)
    assert (later.status, later.inserted) == ("succeeded", 150)  # from the lost run's checkpoint
    lost.refresh_from_db()
    assert lost.status == "failed"
    assert lost.error == "Superseded: a later run continued from its checkpoint."
    # Its task, arriving after all, does nothing.
    tasks.execute_run.run(str(lost.pk))
    lost.refresh_from_db()
    assert lost.status == "failed"
    assert Record.objects.count() == 250
