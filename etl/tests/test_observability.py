"""What ETL runs tell an operator: runs, rows, duration, drift and quarantine counted; one
WARNING per drifted field and one per quarantining batch; a failed run's ERROR line."""

from __future__ import annotations

import json
import logging

import pytest

from etl.mock_api import MockApi
from etl.models import QuarantinedItem
from etl.services import etl_run_source
from etl.tests.factories import api_source_create, csv_source_create
from nexus.tests.metric_values import Moved
from nexus.tests.stub_server import StubServer

pytestmark = pytest.mark.django_db


def _events(caplog, name: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def test_a_run_is_counted_with_rows_duration_and_quarantine(org_a, files, caplog):
    caplog.set_level(logging.INFO, logger="etl.services")
    source = csv_source_create(config={"path": "articles.csv"})
    with Moved() as moved:
        run = etl_run_source(source=source)
    assert run.status == "succeeded", run.error
    assert moved("nexus_etl_runs_total", source_kind="csv", outcome="succeeded") == 1
    assert moved("nexus_etl_rows_ingested_total", source_kind="csv") == run.inserted + run.updated
    assert moved("nexus_etl_run_duration_seconds_count", source_kind="csv") == 1
    assert moved("nexus_etl_quarantined_items_total", source_kind="csv") == run.quarantined
    (line,) = _events(caplog, "etl.items_quarantined")
    assert line["count"] == run.quarantined
    assert line["run_id"] == str(run.pk)
    assert line["reasons"]
    # The reasons say why, never the values: an item's content stays out of the logs.
    logged = json.dumps(line)
    for item in QuarantinedItem.objects.filter(run=run):
        for value in item.payload.values():
            if isinstance(value, str) and len(value) > 3:
                assert value not in logged


def test_drift_is_logged_once_per_field_with_its_match(org_a, caplog):
    caplog.set_level(logging.INFO, logger="etl.services")
    with MockApi(api_key="test-key", items=20, renames={"title": "item_title", "author": "writer"}) as api:
        source = api_source_create(url=api.url, api_key="test-key")
        with Moved() as moved:
            run = etl_run_source(source=source)
    lines = _events(caplog, "etl.drift")
    assert len(lines) == run.drift_warnings
    renamed = next(line for line in lines if line["drift_kind"] == "renamed")
    assert renamed["expected_field"] == "title"
    assert renamed["matched_field"] == "item_title"
    assert renamed["confidence"] >= 85
    assert renamed["source_id"] == str(source.pk)
    assert renamed["level"] == "warning"
    assert moved("nexus_etl_drift_events_total", drift_kind="renamed") == 1


def test_a_failed_run_is_counted_and_logged_as_an_error(org_a, caplog):
    caplog.set_level(logging.INFO, logger="etl.services")
    server = StubServer()
    server.route("GET", "/items", lambda request: (500, {}, {"error": "down"}))
    with server:
        source = api_source_create(url=f"{server.url}/items")
        with Moved() as moved:
            run = etl_run_source(source=source)
    assert run.status == "failed"
    assert moved("nexus_etl_runs_total", source_kind="api", outcome="failed") == 1
    (line,) = _events(caplog, "etl.run_failed")
    assert line["run_id"] == str(run.pk)
    assert line["error_class"] == "FetchError"
    assert line["level"] == "error"
