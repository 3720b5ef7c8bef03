"""The scheduled path and the run_etl command.

Beat's `etl.dispatch_due` fans out one task per organisation, each sent for that
organisation's schema, which queues that organisation's due sources only.
ETL_SCHEDULED_FAIL_AFTER stops the runs the schedule starts, never the resume after them;
`run_etl --fail-after N` stops a run on purpose and the next run resumes. Messages are
recorded at the broker edge and run the way a worker runs them (schema from the header).
"""

from dataclasses import dataclass
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from etl import tasks
from etl.models import DataSource, EtlRun, RawCsvRecord, Record
from etl.services import etl_run_queue
from etl.tests.factories import csv_source_create
from nexus.celery import app as celery_app

pytestmark = pytest.mark.django_db


@dataclass
class Message:
    task: str
    args: list
    schema: str | None


class Broker:
    def __init__(self):
        self.sent: list[Message] = []

    def publish(self, producer, name, message, **options):
        args = message.body[0] if isinstance(message.body, (list, tuple)) else []
        self.sent.append(Message(name, list(args), (options.get("headers") or {}).get("_schema_name")))

    def take(self, task: str) -> list[Message]:
        taken = [m for m in self.sent if m.task == task]
        self.sent = [m for m in self.sent if m.task != task]
        return taken


@pytest.fixture
def broker(monkeypatch):
    """What Celery would publish (task, args, and the schema header), recorded instead."""
    recorder = Broker()
    monkeypatch.setattr(celery_app.amqp, "send_task_message", recorder.publish)
    return recorder


@pytest.fixture
def work(broker, django_capture_on_commit_callbacks):
    """work(message): run a recorded message as a worker does, in the schema its header
    names; what it sends on commit is recorded in turn."""

    def run(message: Message) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            celery_app.tasks[message.task].apply(
                args=message.args, headers={"_schema_name": message.schema}, throw=True
            )

    return run


def _beat(broker, work) -> None:
    """One tick of beat, and the worker draining what it queues."""
    tasks.dispatch_due.apply(throw=True)  # sent by beat from the public schema
    while broker.sent:
        work(broker.sent.pop(0))


def _csv(files, name: str, rows: int = 10):
    path = files.parent / connection.schema_name / name  # the current organisation's directory
    path.write_text("id,title\n" + "".join(f"{name}-{i},Row {i}\n" for i in range(1, rows + 1)))
    return path


def _source(path, name: str = "Rows", **kwargs) -> DataSource:
    return csv_source_create(
        name=name, config={"path": path.name}, field_mapping={"external_id": "id", "title": "title"}, **kwargs
    )


def _make_due(source: DataSource) -> None:
    DataSource.objects.filter(pk=source.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))


def test_dispatch_due_queues_due_sources_in_their_own_organisations_schema(world, files, broker, work):
    with tenant_context(world.org_a):
        due_a = _source(_csv(files, "a.csv"), "A due")
        later = _source(_csv(files, "later.csv"), "A later")
        DataSource.objects.filter(pk=later.pk).update(next_run_at=timezone.now() + timedelta(minutes=5))
        _source(_csv(files, "off.csv"), "A disabled", enabled=False)
    with tenant_context(world.org_b):
        due_b = _source(_csv(files, "b.csv"), "B due")

    tasks.dispatch_due.apply(throw=True)
    fan_out = broker.take("etl.dispatch_organisation")
    assert {m.schema for m in fan_out} >= {world.org_a.schema_name, world.org_b.schema_name}
    assert len(fan_out) == len({m.schema for m in fan_out})  # one per organisation
    assert "public" not in {m.schema for m in fan_out}

    for message in fan_out:
        work(message)
    queued = broker.take("etl.execute_run")
    assert sorted(m.schema for m in queued) == sorted([world.org_a.schema_name, world.org_b.schema_name])
    for org, source in ((world.org_a, due_a), (world.org_b, due_b)):
        (message,) = [m for m in queued if m.schema == org.schema_name]
        with tenant_context(org):
            run = EtlRun.objects.get(pk=message.args[0])
            assert (run.source_id, run.trigger, run.status) == (source.pk, "schedule", "queued")
            assert EtlRun.objects.count() == 1  # the source not due yet and the disabled one wait

    for message in queued:
        work(message)
    with tenant_context(world.org_a):
        assert EtlRun.objects.get().status == "succeeded"
        assert Record.objects.filter(source=due_a).count() == 10
    with tenant_context(world.org_b):
        assert EtlRun.objects.get().status == "succeeded"
        assert Record.objects.filter(source=due_b).count() == 10


def test_scheduled_fail_after_stops_scheduled_runs_and_the_resume_completes(
    world, files, broker, work, settings
):
    settings.ETL_SCHEDULED_FAIL_AFTER = 4
    settings.ETL_BATCH_SIZE = 3
    with tenant_context(world.org_a):
        source = _source(_csv(files, "rows.csv"))

    _beat(broker, work)
    with tenant_context(world.org_a):
        failed = EtlRun.objects.get()
        assert (failed.trigger, failed.status, failed.fetched) == ("schedule", "failed", 4)
        assert "Stopped on purpose after 4 items" in failed.error
        assert failed.checkpoint_after["row"] == 4
        assert Record.objects.filter(source=source).count() == 4
        _make_due(source)

    _beat(broker, work)
    with tenant_context(world.org_a):
        resumed = EtlRun.objects.exclude(pk=failed.pk).get()
        assert (resumed.trigger, resumed.status, resumed.error) == ("resume", "succeeded", "")
        assert resumed.checkpoint_before == failed.checkpoint_after
        assert (resumed.fetched, resumed.inserted, resumed.skipped) == (6, 6, 0)
        ids = set(Record.objects.filter(source=source).values_list("external_id", flat=True))
        assert ids == {f"rows.csv-{i}" for i in range(1, 11)}
        assert RawCsvRecord.objects.filter(source=source).count() == 10


def test_run_now_after_a_scheduled_failure_resumes_and_completes(
    world, files, broker, work, settings, api_as, django_capture_on_commit_callbacks
):
    """The run after a failure is a resume even when a person starts it; the setting must
    not stop it too (it did, so nothing could complete while the setting was on)."""
    settings.ETL_SCHEDULED_FAIL_AFTER = 4
    with tenant_context(world.org_a):
        source = _source(_csv(files, "rows.csv"))
    _beat(broker, work)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(world.admin_a).post(f"/api/v1/etl/sources/{source.pk}/run")
    assert response.status_code == 202
    (message,) = broker.take("etl.execute_run")
    assert message.schema == world.org_a.schema_name
    work(message)
    with tenant_context(world.org_a):
        run = EtlRun.objects.get(pk=response.json()["data"]["run_id"])
        assert (run.trigger, run.status, run.inserted) == ("resume", "succeeded", 6)
        assert Record.objects.filter(source=source).count() == 10


def test_a_manual_run_is_never_stopped_by_the_scheduled_setting(
    world, files, broker, work, settings, django_capture_on_commit_callbacks
):
    settings.ETL_SCHEDULED_FAIL_AFTER = 4
    with tenant_context(world.org_a):
        source = _source(_csv(files, "rows.csv"))
        with django_capture_on_commit_callbacks(execute=True):
            run = etl_run_queue(source=source, trigger="manual")
    (message,) = broker.take("etl.execute_run")
    work(message)
    with tenant_context(world.org_a):
        run.refresh_from_db()
        assert (run.trigger, run.status, run.fetched) == ("manual", "succeeded", 10)


def _run_etl(*args) -> str:
    out = StringIO()
    call_command("run_etl", *args, stdout=out)
    return out.getvalue()


def test_run_etl_fail_after_stops_the_run_and_the_next_run_resumes(world, files):
    with tenant_context(world.org_a):
        source = _source(_csv(files, "rows.csv"))

    out = StringIO()
    with pytest.raises(CommandError, match="the next run resumes") as failure:
        call_command("run_etl", "--source", str(source.pk), "--fail-after", "3", stdout=out)
    assert failure.value.returncode == 1  # a non-zero exit status for the shell
    printed = out.getvalue()
    assert "failed (manual)" in printed
    assert "fetched 3, inserted 3" in printed
    assert "error: Stopped on purpose after 3 items (fail-after 3)." in printed
    with tenant_context(world.org_a):
        failed = EtlRun.objects.get()
        assert (failed.status, failed.trigger, failed.fetched, failed.checkpoint_after["row"]) == (
            "failed",
            "manual",
            3,
            3,
        )

    printed = _run_etl("--source", str(source.pk), "--org", world.org_a.slug)
    assert "succeeded (resume)" in printed
    assert "fetched 7, inserted 7, updated 0, skipped 0" in printed
    with tenant_context(world.org_a):
        runs = list(EtlRun.objects.order_by("started_at").values_list("trigger", "status", "inserted"))
        assert runs == [("manual", "failed", 3), ("resume", "succeeded", 7)]
        ids = set(Record.objects.filter(source=source).values_list("external_id", flat=True))
        assert ids == {f"rows.csv-{i}" for i in range(1, 11)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-after", "0"], "--fail-after must be at least 1"),
        (["--org", "no-such-org"], "No organisation with slug"),
    ],
)
def test_run_etl_refuses_bad_arguments(world, files, args, message):
    with tenant_context(world.org_a):
        source = _source(_csv(files, "rows.csv"))
    with pytest.raises(CommandError, match=message):
        _run_etl("--source", str(source.pk), *args)
    with tenant_context(world.org_a):
        assert not EtlRun.objects.exists()


def test_run_etl_reports_an_unknown_source(world):
    with pytest.raises(CommandError, match="No data source"):
        _run_etl("--source", "00000000-0000-0000-0000-000000000000")
