"""An ETL run of a 200,000-row CSV whose worker is SIGKILLed a third of the way through:
the sweep marks the run failed at the moment its worker stopped, the next run is a
`resume` from the last committed batch, and the source ends with exactly one record and one
raw row per CSV row, no duplicate ids, and a run history that tells what happened."""

import csv
import io
import time
from datetime import UTC, datetime

import httpx
from django.db.models import Count
from django_tenants.utils import tenant_context

from etl.models import EtlRun, RawCsvRecord, Record, RunStatus
from etl.samples import ARTICLES_CSV_MAPPING
from tests.faults.conftest import wait_for

ROWS = 200_000


def _csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Article ID", "Headline", "Body Text", "Published On", "Author Name", "Tags"])
    for n in range(ROWS):
        writer.writerow(
            [f"a-{n:06d}", f"Headline {n}", f"Body of article {n}.", "2026-11-01T10:00:00Z", "Ann", "x"]
        )
    return out.getvalue().encode()


def test_etl_run_killed_mid_run_then_resumed(system, live_org, report):
    api = system.api(live_org.admin)
    created = api.call(
        "POST",
        "/api/v1/etl/sources",
        {"name": "Articles", "kind": "csv", "config": {}, "field_mapping": ARTICLES_CSV_MAPPING},
    )
    assert created.status == 201, created.body
    source_id = created.body["data"]["id"]
    uploaded = httpx.post(
        f"{system.api_base}/api/v1/etl/sources/{source_id}/file",
        headers={"Authorization": f"Bearer {api.token}"},
        files={"file": ("articles.csv", _csv(), "text/csv")},
        timeout=60,
    )
    assert uploaded.status_code == 200, uploaded.text

    first = api.call("POST", f"/api/v1/etl/sources/{source_id}/run", headers={"Idempotency-Key": "run-1"})
    assert first.status == 202, first.body
    first_id = first.body["data"]["run_id"]

    def a_third_in():
        with tenant_context(live_org):
            return Record.objects.filter(source_id=source_id).count() >= ROWS // 3

    wait_for(a_third_in, timeout=180, every=0.1, what="a third of the rows ingested")
    system.workers["etl"].kill()
    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
    with tenant_context(live_org):
        at_kill = Record.objects.filter(source_id=source_id).count()

    def marked_failed():
        with tenant_context(live_org):
            return EtlRun.objects.filter(pk=first_id, status=RunStatus.FAILED).first()

    failed = wait_for(marked_failed, timeout=60, what="the killed run marked failed")
    noticed = time.monotonic() - killed_at
    assert noticed <= 30
    # Finished when its worker last showed life: within a heartbeat period of the kill.
    assert 0 <= (killed_wall - failed.finished_at).total_seconds() <= 5
    assert failed.error.startswith("The worker running it stopped")

    system.restart_worker("etl")
    second = api.call("POST", f"/api/v1/etl/sources/{source_id}/run", headers={"Idempotency-Key": "run-2"})
    assert second.status == 202, second.body
    second_id = second.body["data"]["run_id"]

    def finished():
        with tenant_context(live_org):
            return EtlRun.objects.filter(pk=second_id, status=RunStatus.SUCCEEDED).first()

    resumed = wait_for(finished, timeout=300, every=0.5, what="the resumed run succeeded")
    with tenant_context(live_org):
        runs = list(EtlRun.objects.filter(source_id=source_id).order_by("started_at"))
        assert [(r.trigger, r.status) for r in runs] == [("manual", "failed"), ("resume", "succeeded")]
        assert Record.objects.filter(source_id=source_id).count() == ROWS
        assert not (
            Record.objects.filter(source_id=source_id)
            .values("external_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .exists()
        )
        assert RawCsvRecord.objects.filter(source_id=source_id).count() == ROWS
        # The two runs' counts add up to the file, each row counted once.
        assert runs[0].inserted + runs[1].inserted == ROWS
        assert runs[1].checkpoint_before == runs[0].checkpoint_after
    report(
        rows=ROWS,
        killed_at_records=at_kill,
        marked_failed_after_s=round(noticed, 1),
        stopped_at_vs_kill_s=round((killed_wall - failed.finished_at).total_seconds(), 1),
        resumed_run_inserted=resumed.inserted,
        records=ROWS,
        duplicates=0,
        total_after_kill_s=round(time.monotonic() - killed_at, 1),
    )
