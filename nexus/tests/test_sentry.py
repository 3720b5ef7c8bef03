"""Errors reach Sentry once each, tagged with the organisation, user, request, task, job or
run, with the real sentry-sdk sending to a local stand-in of Sentry's ingest endpoint: an
API error in this process, a failing job and a failing ETL run on a real worker."""

from __future__ import annotations

import json
import time

import pytest
import sentry_sdk
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from etl.tests.factories import api_source_create
from jobs import services as job_services
from jobs.models import Job, JobStatus
from nexus.observability import sentry_init
from nexus.tests.live import WorkerProcess
from nexus.tests.sentry_stub import SentryStub
from nexus.tests.stub_server import StubServer
from tenants.tests.helpers import bearer_for


@pytest.fixture
def sentry_stub():
    with SentryStub() as stub:
        yield stub


@pytest.fixture
def sentry_here(sentry_stub):
    """This process's SDK pointed at the stand-in, and switched off again afterwards."""
    sentry_init(dsn=sentry_stub.dsn, environment="test-env", release="nexus@test", traces_sample_rate=0.0)
    yield sentry_stub
    sentry_sdk.flush(5)
    sentry_sdk.init(dsn=None)


@pytest.mark.urls("nexus.tests.urls")
def test_api_error_arrives_once_tagged_with_the_caller(world, sentry_here):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(world.member_a)}")
    response = client.get("/api/v1/test/boom", HTTP_COOKIE="sessionid=s3cr3t-session")
    assert response.status_code == 500
    sentry_sdk.flush(5)
    (event,) = sentry_here.wait_for(request_id=response["X-Request-ID"])
    assert event["tags"]["org_id"] == str(world.org_a.id)
    assert event["tags"]["org_slug"] == world.org_a.slug
    assert event["tags"]["user_id"] == str(world.member_a.pk)
    assert event["user"] == {"id": str(world.member_a.pk)}
    assert event["release"] == "nexus@test"
    assert event["environment"] == "test-env"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    sent = json.dumps(event)
    assert world.member_a.email not in sent
    assert "s3cr3t-session" not in sent
    assert "Bearer" not in sent


def _json_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


def _wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached after {timeout} s")


@pytest.fixture
def failing_source_server():
    server = StubServer()
    server.route("GET", "/items", lambda request: (500, {}, {"error": "down"}))
    with server:
        yield server


def test_failing_job_and_etl_run_on_a_worker_arrive_once_each(
    live_org, gemini_stub, sentry_stub, failing_source_server
):
    worker = WorkerProcess(
        {
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": gemini_stub.url,
            "SENTRY_DSN": sentry_stub.dsn,
            "SENTRY_IN_TESTS": "true",
            "SENTRY_ENVIRONMENT": "test-env",
            "RELEASE": "nexus@test",
            "LOG_FORMAT": "json",
        },
        name="sentry",
    )
    worker.start()
    try:
        live_org.grant(100)
        with tenant_context(live_org):
            # The stand-in answers "[bad-request]" with a 400: a permanent failure, one attempt.
            job = job_services.job_create(
                user=live_org.admin,
                job_type="summarize",
                text="Quarterly notes [bad-request]",
                provider="gemini",
            )
            source = api_source_create(url=f"{failing_source_server.url}/items")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(live_org.admin)}")
        run_id = client.post(f"/api/v1/etl/sources/{source.pk}/run").json()["data"]["run_id"]

        (job_event,) = sentry_stub.wait_for(job_id=str(job.pk))
        (run_event,) = sentry_stub.wait_for(run_id=str(run_id))
        with tenant_context(live_org):
            assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED
        time.sleep(1)  # anything sent twice would have arrived by now
    finally:
        worker.stop()

    assert len(sentry_stub.events_tagged(job_id=str(job.pk))) == 1
    assert len(sentry_stub.events_tagged(run_id=str(run_id))) == 1
    assert job_event["tags"]["org_id"] == str(live_org.id)
    assert job_event["tags"]["org_slug"] == live_org.slug
    assert job_event["tags"]["task"] == "jobs.run_job"
    assert job_event["logentry"]["message"] == "job.failed"
    assert job_event["release"] == "nexus@test"
    assert run_event["tags"]["org_id"] == str(live_org.id)
    assert run_event["tags"]["task"] == "etl.execute_run"
    assert run_event["logentry"]["message"] == "etl.run_failed"
    assert "Quarterly notes" not in json.dumps(sentry_stub.events)

    # The worker's lines carry the task, the organisation and the object worked on.
    lines = _json_lines(worker.log_path)
    (failed_line,) = [
        line for line in lines if line.get("event") == "job.failed" and line.get("job_id") == str(job.pk)
    ]
    assert failed_line["org_id"] == str(live_org.id)
    assert failed_line["severity"] == "ERROR"
    assert failed_line["task_id"]
    task_lines = [
        line
        for line in lines
        if line.get("event") == "task" and line.get("task_id") == failed_line["task_id"]
    ]
    assert task_lines[0]["org_id"] == str(live_org.id)
    assert task_lines[0]["status"] == "SUCCESS"
    assert isinstance(task_lines[0]["duration_ms"], float)


def test_breadcrumbs_carry_no_sql_parameters_or_secrets():
    from nexus.observability import _before_breadcrumb, _before_send

    crumb = _before_breadcrumb(
        {
            "category": "query",
            "message": "SELECT 1 WHERE email = %s",
            "data": {"db.params": ["my diary text"]},
        },
        {},
    )
    assert "data" not in crumb
    event = _before_send(
        {"breadcrumbs": {"values": [{"message": "sent to ann@example.com", "data": {"token": "abc"}}]}}, {}
    )
    (sent,) = event["breadcrumbs"]["values"]
    assert sent["message"] == "sent to [email]"
    assert sent["data"] == {"token": "[redacted]"}


def test_the_sdk_collects_nothing_personal_by_itself(sentry_here):
    # As the SDK resolved it: a category left out would take its permissive default.
    collected = sentry_sdk.get_client().options["data_collection"]
    assert collected["database_query_data"] is False
    assert collected["queues"] is False
    assert collected["gen_ai"] == {"inputs": False, "outputs": False}
    assert collected["user_info"] is False
    assert collected["cookies"] == {"mode": "off"}
    assert collected["url_query_params"] == {"mode": "off"}
    assert collected["http_headers"]["request"]["mode"] == "allowlist"
    assert collected["stack_frame_variables"] is False
