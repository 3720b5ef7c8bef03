"""Uploaded ETL files on Google Cloud Storage, as the deployment stores them: the storage
settings nexus/settings.py builds for FILE_STORAGE_BACKEND=gcs, the real google-cloud-storage
client, and a local stand-in of the GCS JSON API whose bucket has uniform bucket-level
access (an upload carrying an object ACL is refused there, as in the deployment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django_tenants.utils import tenant_context

from etl.models import DataSource, Record
from etl.services import etl_run_source
from etl.tests.conftest import SAMPLE
from etl.tests.factories import csv_source_create
from nexus.tests.gcs_stub import GcsStub

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "nexus-uploads"
PREFIX = "uploads"
ARTICLES = (SAMPLE / "articles.csv").read_bytes()
MISSING = "The uploaded file is missing from storage; upload it again."


@pytest.fixture(scope="module")
def gcs_storage() -> dict:
    """STORAGES["default"] exactly as nexus/settings.py builds it for the deployment's
    environment (read from a fresh process: the settings are computed at import)."""
    env = {
        **os.environ,
        "FILE_STORAGE_BACKEND": "gcs",
        "FILE_STORAGE_BUCKET": BUCKET,
        "FILE_STORAGE_PREFIX": PREFIX,
    }
    code = "import json, nexus.settings as s; print(json.dumps(s.STORAGES['default']))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _use_storage(settings, storage: dict) -> None:
    # Changing STORAGES makes Django drop its storage instances (setting_changed), so the
    # code under test builds the new backend; the settings fixture restores it afterwards.
    settings.STORAGES = {**settings.STORAGES, "default": storage}


@pytest.fixture
def gcs(settings, monkeypatch, gcs_storage):
    with GcsStub(buckets={BUCKET}) as stub:
        # The client then talks to the stand-in, with anonymous credentials.
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", stub.url)
        _use_storage(settings, gcs_storage)
        yield stub


def _csv_source(org) -> DataSource:
    with tenant_context(org):
        return csv_source_create(name="Uploads")


def _upload(client, source_id, content: bytes, name: str = "articles.csv"):
    return client.post(
        f"/api/v1/etl/sources/{source_id}/file",
        {"file": ContentFile(content, name=name)},
        format="multipart",
    )


def _object_name(org, source, file_name: str = "articles.csv") -> str:
    return f"{PREFIX}/{org.schema_name}/etl/{source.pk}/{file_name}"


def _run(org, source) -> object:
    with tenant_context(org):
        return etl_run_source(source=DataSource.objects.get(pk=source.pk))


# --- Upload, ingest, replace, delete ------------------------------------------------------------


def test_an_uploaded_csv_is_stored_under_the_organisations_location_and_ingested_from_the_bucket(
    world, api_as, gcs
):
    source = _csv_source(world.org_a)
    response = _upload(api_as(world.admin_a), source.pk, ARTICLES)
    assert response.status_code == 200, response.json()
    assert response.json()["data"]["file"]["size"] == len(ARTICLES)

    name = _object_name(world.org_a, source)
    assert gcs.names(BUCKET) == [name]
    stored = gcs.objects[(BUCKET, name)]
    assert stored.data == ARTICLES
    assert stored.content_type == "text/csv"
    assert stored.content_encoding is None
    with tenant_context(world.org_a):
        # The row keeps the name inside the prefix; the prefix is the storage's own.
        assert DataSource.objects.get(pk=source.pk).file_key == name.removeprefix(f"{PREFIX}/")

    run = _run(world.org_a, source)
    assert run.status == "succeeded", run.error
    assert run.inserted == 7
    with tenant_context(world.org_a):
        titles = set(Record.objects.filter(source=source).values_list("title", flat=True))
    assert len(titles) == 7
    assert "Quarterly numbers" in titles
    # The run read the object's bytes from the bucket, once.
    (download,) = gcs.downloads()
    assert download in gcs.requests_for(BUCKET, name)

    assert [r.query["uploadType"] for r in gcs.uploads()] == [["multipart"]]
    assert gcs.acl_requests() == []


def test_a_new_upload_replaces_the_object_and_deleting_the_source_deletes_it(
    world, api_as, gcs, django_capture_on_commit_callbacks
):
    source = _csv_source(world.org_a)
    client = api_as(world.admin_a)
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(client, source.pk, ARTICLES).status_code == 200
    assert _run(world.org_a, source).inserted == 7

    changed = ARTICLES + b"A-011,Another headline,Body.,2026-01-15,Jo Lin,news,6\n"
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(client, source.pk, changed, name="new articles.csv").status_code == 200
    new_name = _object_name(world.org_a, source, "new-articles.csv")
    assert gcs.names(BUCKET) == [new_name]  # the previous object was deleted
    run = _run(world.org_a, source)
    assert run.status == "succeeded", run.error
    assert (run.inserted, run.updated) == (1, 0)

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/etl/sources/{source.pk}").status_code == 204
    assert gcs.names(BUCKET) == []
    assert [r.method for r in gcs.requests if r.method == "DELETE"] == ["DELETE", "DELETE"]
    assert gcs.acl_requests() == []


def test_an_upload_over_eight_mib_goes_up_in_a_resumable_session_without_an_acl(world, api_as, gcs):
    """Past 8 MiB the client switches from one multipart request to a resumable session
    (uploads may be up to ETL_MAX_UPLOAD_BYTES, 20 MiB by default)."""
    header, _, _ = ARTICLES.partition(b"\n")
    row = b"A-%07d,Headline,Body text of the article.,2026-01-05,Ann Lee,news,1\n"
    large = header + b"\n" + b"".join(row % i for i in range(160_000))
    assert 8 * 1024 * 1024 < len(large) < 20 * 1024 * 1024
    source = _csv_source(world.org_a)
    response = _upload(api_as(world.admin_a), source.pk, large, name="large.csv")
    assert response.status_code == 200, response.json()

    stored = gcs.objects[(BUCKET, _object_name(world.org_a, source, "large.csv"))]
    assert stored.data == large
    assert [(r.method, r.query["uploadType"]) for r in gcs.uploads()] == [
        ("POST", ["resumable"]),
        ("PUT", ["resumable"]),
    ]
    assert gcs.acl_requests() == []


# --- One organisation's objects are not another's ---------------------------------------------------


def test_uploading_to_another_organisations_source_is_404_and_puts_nothing_in_the_bucket(world, api_as, gcs):
    source_b = _csv_source(world.org_b)
    response = _upload(api_as(world.admin_a), source_b.pk, ARTICLES)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert gcs.names(BUCKET) == []
    assert gcs.uploads() == []


def test_a_file_key_of_another_organisation_is_never_fetched_and_fails_like_a_missing_object(
    world, api_as, gcs
):
    source_b = _csv_source(world.org_b)
    assert _upload(api_as(world.admin_b), source_b.pk, ARTICLES).status_code == 200
    name_b = _object_name(world.org_b, source_b)
    with tenant_context(world.org_b):
        key_b = DataSource.objects.get(pk=source_b.pk).file_key

    # A's own object, gone from the bucket: what "does not exist" looks like.
    source_gone = _csv_source(world.org_a)
    assert _upload(api_as(world.admin_a), source_gone.pk, ARTICLES).status_code == 200
    del gcs.objects[(BUCKET, _object_name(world.org_a, source_gone))]
    gone = _run(world.org_a, source_gone)
    assert (gone.status, gone.error) == ("failed", MISSING)

    # A's source made to name B's object (a row copied between schemas).
    source_a = _csv_source(world.org_a)
    with tenant_context(world.org_a):
        DataSource.objects.filter(pk=source_a.pk).update(file_key=key_b)
    seen_before = len(gcs.requests_for(BUCKET, name_b))
    run = _run(world.org_a, source_a)
    assert (run.status, run.error, run.fetched) == ("failed", MISSING, 0)
    assert len(gcs.requests_for(BUCKET, name_b)) == seen_before  # not even its metadata
    with tenant_context(world.org_a):
        assert not Record.objects.filter(source=source_a).exists()

    # B's own source still reads it.
    assert _run(world.org_b, source_b).inserted == 7


def test_a_file_key_that_climbs_out_of_the_sources_location_is_never_fetched(world, api_as, gcs):
    source_b = _csv_source(world.org_b)
    assert _upload(api_as(world.admin_b), source_b.pk, ARTICLES).status_code == 200
    name_b = _object_name(world.org_b, source_b)
    source_a = _csv_source(world.org_a)
    climbing = f"{world.org_a.schema_name}/etl/{source_a.pk}/../../../{name_b.removeprefix(PREFIX + '/')}"
    with tenant_context(world.org_a):
        DataSource.objects.filter(pk=source_a.pk).update(file_key=climbing)
    seen_before = len(gcs.requests_for(BUCKET, name_b))
    run = _run(world.org_a, source_a)
    assert len(gcs.requests_for(BUCKET, name_b)) == seen_before
    assert (run.status, run.error, run.fetched) == ("failed", MISSING, 0)


# --- What the object's name tells GCS ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["articles.csv.gz", "articles.tgz", "articles.csv.br", "a" * 97 + ".gz" + "b" * 20]
)
def test_a_plain_csv_named_like_a_compressed_file_is_ingested(world, api_as, gcs, name):
    source = _csv_source(world.org_a)
    response = _upload(api_as(world.admin_a), source.pk, ARTICLES, name=name)
    assert response.status_code == 200, response.json()  # its content is checked as plain CSV
    run = _run(world.org_a, source)
    assert (run.status, run.error, run.inserted) == ("succeeded", "", 7)


# --- The bucket refuses object ACLs ---------------------------------------------------------------


def test_an_upload_with_an_object_acl_is_refused_by_the_uniform_access_bucket(
    world, api_as, gcs, settings, gcs_storage
):
    """The earlier setting (default_acl "projectPrivate") sent an ACL with every upload: the
    deployment's bucket refuses those, and so does the stand-in, so the tests above would fail
    with it."""
    options = {**gcs_storage["OPTIONS"], "default_acl": "projectPrivate"}
    _use_storage(settings, {**gcs_storage, "OPTIONS": options})
    source = _csv_source(world.org_a)

    response = _upload(api_as(world.admin_a), source.pk, ARTICLES)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert response["Retry-After"]
    assert [r.query.get("predefinedAcl") for r in gcs.acl_requests()] == [["projectPrivate"]]
    assert gcs.refused == gcs.acl_requests()  # answered 400: UNIFORM_ACCESS_REFUSAL
    assert gcs.names(BUCKET) == []
    with tenant_context(world.org_a):
        assert DataSource.objects.get(pk=source.pk).file_key == ""
