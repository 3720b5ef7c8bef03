"""Unified records sent to the AI jobs: `record_id` instead of `text` on /summarize and
/analyze, and the Summarise / Analyse buttons of the data page."""

import json

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from etl.models import Record
from etl.services import etl_source_create
from etl.tests.conftest import CSV_MAPPING
from jobs import tasks
from jobs.models import Job
from nexus.management.commands.openapi_snapshot import snapshot_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(broker):
    """Job tasks that would be sent to the broker."""
    return broker.watch("jobs.run_job")


def _record(files, org, *, external_id="R-1", title="Quarterly report", body="Revenue grew. Costs fell."):
    with tenant_context(org):
        source = etl_source_create(
            name="Articles",
            kind="csv",
            config={"path": "articles.csv"},
            field_mapping=CSV_MAPPING,
        )
        return Record.objects.create(
            source=source, external_id=external_id, title=title, body=body, content_hash="0" * 40
        )


def test_summarise_a_record_by_id(funded, api_as, files, sent):
    record = _record(files, funded.org_a)
    client = api_as(funded.member_a)
    response = client.post("/api/v1/summarize", {"record_id": record.pk}, format="json")
    assert response.status_code == 202, response.json()
    data = response.json()["data"]
    assert (data["job_type"], data["status"], data["cost"]) == ("summarize", "pending", 10)
    # The v1 answer keeps its exact shape.
    snapshot = json.loads(snapshot_path("v1").read_text())
    assert set(data) == set(snapshot["components"]["schemas"]["JobOutput"]["properties"])

    with tenant_context(funded.org_a):
        job = Job.objects.get(pk=data["id"])
        assert job.input == {"text": "Quarterly report\n\nRevenue grew. Costs fell.", "record_id": record.pk}
        tasks.run_job(data["id"])
    detail = client.get(f"/api/v1/jobs/{data['id']}").json()["data"]
    assert detail["status"] == "completed"
    assert detail["output"]["summary"]
    assert detail["input"]["record_id"] == record.pk
    assert client.get("/api/v1/credits").json()["data"]["balance"] == 90


def test_analyse_a_record_by_id(funded, api_as, files, sent):
    record = _record(files, funded.org_a, title="", body="A wonderful, excellent result.")
    response = api_as(funded.member_a).post("/api/v1/analyze", {"record_id": record.pk}, format="json")
    assert response.status_code == 202
    assert response.json()["data"]["cost"] == 25
    with tenant_context(funded.org_a):
        assert Job.objects.get().input == {"text": "A wonderful, excellent result.", "record_id": record.pk}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"text", "record_id"}),
        ({"text": "Some text.", "record_id": 1}, {"text", "record_id"}),
        ({"record_id": "abc"}, {"record_id"}),
        ({"record_id": 0}, {"record_id"}),
        ({"record_id": None}, {"record_id"}),
    ],
)
def test_text_or_record_id_exactly_one_else_422(funded, api_as, body, fields, sent):
    response = api_as(funded.member_a).post("/api/v1/summarize", body, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert set(error["details"]["fields"]) == fields
    with tenant_context(funded.org_a):
        assert not Job.objects.exists()
    assert sent == []


def test_an_unknown_or_another_organisations_record_is_404_and_charges_nothing(funded, api_as, files, sent):
    theirs = _record(files, funded.org_b)
    client = api_as(funded.member_a)
    for record_id in (theirs.pk, 2**62):
        response = client.post("/api/v1/summarize", {"record_id": record_id}, format="json")
        assert response.status_code == 404
        assert response.json()["error"] == {"code": "NOT_FOUND", "message": "No such record.", "details": {}}
    assert client.get("/api/v1/credits").json()["data"]["balance"] == 100
    with tenant_context(funded.org_a):
        assert not Job.objects.exists()


def test_a_record_without_text_is_422(funded, api_as, files, sent):
    record = _record(files, funded.org_a, title="  ", body="")
    response = api_as(funded.member_a).post("/api/v1/summarize", {"record_id": record.pk}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"] == {
        "record_id": ["The record has no title or text to process."]
    }


def test_a_record_longer_than_the_limit_is_422(funded, api_as, files, sent, settings):
    settings.JOB_MAX_TEXT_CHARS = 20
    record = _record(files, funded.org_a, title="A title", body="A body that is far too long.")
    response = api_as(funded.member_a).post("/api/v1/summarize", {"record_id": record.pk}, format="json")
    assert response.status_code == 422
    assert "The record's text is 37 characters" in response.json()["error"]["message"]


def test_the_data_page_sends_a_record_to_a_job(funded, files, sent, django_capture_on_commit_callbacks):
    record = _record(files, funded.org_a)
    client = Client()
    client.force_login(funded.member_a)
    page = client.get("/data").content.decode()
    assert f'action="/data/records/{record.pk}/job"' in page
    assert "Summarise" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/data/records/{record.pk}/job", {"job_type": "analyze"}, follow=True)
    assert response.redirect_chain == [("/jobs", 302)]
    assert "Analyse job for “Quarterly report” created (25 credits)." in response.content.decode()
    with tenant_context(funded.org_a):
        job = Job.objects.get()
        assert (job.job_type, job.input["record_id"]) == ("analyze", record.pk)
    assert sent == [str(job.pk)]


def test_the_data_page_explains_what_it_cannot_do(world, files, sent):
    client = Client()
    client.force_login(world.member_a)
    theirs = _record(files, world.org_b, external_id="B-1")  # org A has no records yet
    assert client.post(f"/data/records/{theirs.pk}/job", {"job_type": "summarize"}).status_code == 404
    assert client.post("/data/records/999999999/job", {"job_type": "summarize"}).status_code == 404

    record = _record(files, world.org_a)
    response = client.post(f"/data/records/{record.pk}/job", {"job_type": "summarize"}, follow=True)
    assert response.redirect_chain == [("/data", 302)]
    assert "Not enough credits: this needs 10 and the balance is 0." in response.content.decode()
    response = client.post(f"/data/records/{record.pk}/job", {"job_type": "translate"}, follow=True)
    assert "Unknown job type" in response.content.decode()
    with tenant_context(world.org_a):
        assert not Job.objects.exists()


def test_the_data_page_links_only_web_urls(world, files, sent):
    """Defence in depth: even a stored javascript: URL is never rendered as a link."""
    record = _record(files, world.org_a)
    other = _record(files, world.org_a, external_id="R-2", title="Safe one")
    with tenant_context(world.org_a):
        Record.objects.filter(pk=record.pk).update(url="javascript:alert(document.cookie)")
        Record.objects.filter(pk=other.pk).update(url="https://example.com/safe")
    client = Client()
    client.force_login(world.member_a)
    page = client.get("/data").content.decode()
    assert "javascript:" not in page
    assert '<a href="https://example.com/safe" rel="noopener noreferrer">Safe one</a>' in page
