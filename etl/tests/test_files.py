"""Per-organisation ETL files: uploads (size, content, ownership) stored under the
organisation's own location, and server-side paths confined to its own directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django_tenants.utils import tenant_context

from etl.connectors.base import NO_FILE_UPLOADED
from etl.models import DataSource, Record
from etl.owned import NO_SUCH_FILE
from etl.services import etl_run_source, etl_source_create, etl_source_file_upload
from etl.tests.conftest import API_MAPPING, CSV_MAPPING, RSS_MAPPING, SAMPLE
from etl.tests.factories import csv_source_create

pytestmark = pytest.mark.django_db

ARTICLES = (SAMPLE / "articles.csv").read_bytes()
FEED = (SAMPLE / "feed.xml").read_bytes()


def _stored_files(media_root) -> list[str]:
    root = Path(media_root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _csv_source(org, **kwargs) -> DataSource:
    with tenant_context(org):
        return csv_source_create(name="Uploads", **kwargs)


def _upload(client, source_id, content: bytes, name: str = "articles.csv", version: str = "v1"):
    return client.post(
        f"/api/{version}/etl/sources/{source_id}/file",
        {"file": ContentFile(content, name=name)},
        format="multipart",
    )


# --- Upload, ingest, replace --------------------------------------------------------------------


def test_uploaded_csv_is_ingested_by_the_next_run_and_an_unchanged_reupload_adds_nothing(
    world, api_as, files, settings
):
    source = _csv_source(world.org_a)
    client = api_as(world.admin_a)
    response = _upload(client, source.pk, ARTICLES)
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["id"] == str(source.pk)
    assert data["config"] == {}
    assert data["file"]["name"] == "articles.csv"
    assert data["file"]["size"] == len(ARTICLES)
    assert len(data["file"]["sha256"]) == 64
    assert data["file"]["uploaded_at"]
    assert "file_key" not in data
    assert world.org_a.schema_name not in response.content.decode()
    assert _stored_files(settings.MEDIA_ROOT) == [f"{world.org_a.schema_name}/etl/{source.pk}/articles.csv"]

    with tenant_context(world.org_a):
        first = etl_run_source(source=DataSource.objects.get(pk=source.pk))
        assert first.status == "succeeded", first.error
        assert first.inserted == 7
        assert Record.objects.filter(source=source).count() == 7

    again = _upload(client, source.pk, ARTICLES, version="v2")
    assert again.status_code == 200
    assert again.json()["data"]["file"]["sha256"] == data["file"]["sha256"]
    with tenant_context(world.org_a):
        second = etl_run_source(source=DataSource.objects.get(pk=source.pk))
    assert second.status == "succeeded"
    assert (second.fetched, second.inserted, second.updated) == (0, 0, 0)


def test_a_new_upload_replaces_the_file_deletes_the_old_one_and_ingests_only_what_changed(
    world, api_as, files, settings, django_capture_on_commit_callbacks
):
    source = _csv_source(world.org_a)
    client = api_as(world.admin_a)
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(client, source.pk, ARTICLES).status_code == 200
    with tenant_context(world.org_a):
        etl_run_source(source=DataSource.objects.get(pk=source.pk))
    changed = ARTICLES + b"A-011,Another headline,Body.,2026-01-15,Jo Lin,news,6\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(client, source.pk, changed, name="../../other org/new articles.csv")
    assert response.status_code == 200
    assert response.json()["data"]["file"]["name"] == "new-articles.csv"  # only a base name, made safe
    assert _stored_files(settings.MEDIA_ROOT) == [
        f"{world.org_a.schema_name}/etl/{source.pk}/new-articles.csv"
    ]  # the previous object is gone
    with tenant_context(world.org_a):
        run = etl_run_source(source=DataSource.objects.get(pk=source.pk))
    assert run.status == "succeeded"
    assert run.inserted == 1
    assert run.updated == 0


def test_an_rss_source_takes_a_feed_upload_and_reads_it(world, api_as, files):
    with tenant_context(world.org_a):
        source = etl_source_create(name="Feed", kind="rss", config={}, field_mapping=RSS_MAPPING)
    assert _upload(api_as(world.admin_a), source.pk, FEED, name="feed.xml").status_code == 200
    with tenant_context(world.org_a):
        run = etl_run_source(source=DataSource.objects.get(pk=source.pk))
    assert run.status == "succeeded"
    assert run.inserted > 0


def test_a_source_with_neither_path_nor_url_is_created_and_its_run_fails_until_a_file_is_uploaded(
    world, api_as, files
):
    body = {"name": "Later", "kind": "csv", "config": {}, "field_mapping": CSV_MAPPING}
    response = api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json")
    assert response.status_code == 201
    assert response.json()["data"]["file"] is None
    with tenant_context(world.org_a):
        run = etl_run_source(source=DataSource.objects.get(pk=response.json()["data"]["id"]))
    assert run.status == "failed"
    assert run.error == NO_FILE_UPLOADED


def test_setting_a_path_later_forgets_the_uploaded_file(
    world, api_as, files, settings, django_capture_on_commit_callbacks
):
    source = _csv_source(world.org_a)
    client = api_as(world.admin_a)
    _upload(client, source.pk, ARTICLES)
    with django_capture_on_commit_callbacks(execute=True):
        patched = client.patch(
            f"/api/v1/etl/sources/{source.pk}", {"config": {"path": "articles.csv"}}, format="json"
        )
    assert patched.status_code == 200
    assert patched.json()["data"]["file"] is None
    assert _stored_files(settings.MEDIA_ROOT) == []


def test_an_invalid_change_keeps_the_uploaded_file(world, api_as, files, settings):
    source = _csv_source(world.org_a)
    client = api_as(world.admin_a)
    _upload(client, source.pk, ARTICLES)
    refused = client.patch(
        f"/api/v1/etl/sources/{source.pk}",
        {"config": {"path": "articles.csv"}, "field_mapping": {"title": "Headline"}},
        format="json",
    )
    assert refused.status_code == 422
    assert _stored_files(settings.MEDIA_ROOT) == [f"{world.org_a.schema_name}/etl/{source.pk}/articles.csv"]
    assert client.get(f"/api/v1/etl/sources/{source.pk}").json()["data"]["file"]["name"] == "articles.csv"


def test_deleting_a_source_deletes_its_file(
    world, api_as, files, settings, django_capture_on_commit_callbacks
):
    source = _csv_source(world.org_a)
    client = api_as(world.admin_a)
    _upload(client, source.pk, ARTICLES)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/etl/sources/{source.pk}").status_code == 204
    assert _stored_files(settings.MEDIA_ROOT) == []


# --- Who may upload where -------------------------------------------------------------------------


def test_uploading_to_another_organisations_source_is_404_and_stores_nothing(world, api_as, files, settings):
    source_b = _csv_source(world.org_b)
    response = _upload(api_as(world.admin_a), source_b.pk, ARTICLES)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    unknown = _upload(api_as(world.admin_a), "00000000-0000-0000-0000-000000000000", ARTICLES)
    assert unknown.json()["error"] == response.json()["error"]  # "not yours" looks like "does not exist"
    assert _stored_files(settings.MEDIA_ROOT) == []
    with tenant_context(world.org_b):
        assert DataSource.objects.get(pk=source_b.pk).file_key == ""


def test_members_cannot_upload(world, api_as, files, settings):
    source = _csv_source(world.org_a)
    assert _upload(api_as(world.member_a), source.pk, ARTICLES).status_code == 403
    assert _stored_files(settings.MEDIA_ROOT) == []


def test_uploading_to_an_api_source_is_422(world, api_as, files, settings):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Api", kind="api", config={"url": "http://127.0.0.1:9/items"}, field_mapping=API_MAPPING
        )
    response = _upload(api_as(world.admin_a), source.pk, ARTICLES)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "API sources read their URL; only CSV and RSS sources take a file."
    )
    assert _stored_files(settings.MEDIA_ROOT) == []


# --- Size -----------------------------------------------------------------------------------------


def _assert_too_large(response, limit: int) -> None:
    assert response.status_code == 413, response.content
    error = response.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["details"] == {"limit_bytes": limit}


def test_a_file_one_byte_over_the_default_limit_is_413_and_nothing_is_stored(world, api_as, files, settings):
    assert settings.ETL_MAX_UPLOAD_BYTES == 20 * 1024 * 1024
    source = _csv_source(world.org_a)
    big = b"external_id,title\n" + b"x" * (settings.ETL_MAX_UPLOAD_BYTES - 18 + 1)
    _assert_too_large(_upload(api_as(world.admin_a), source.pk, big), settings.ETL_MAX_UPLOAD_BYTES)
    assert _stored_files(settings.MEDIA_ROOT) == []
    with tenant_context(world.org_a):
        assert DataSource.objects.get(pk=source.pk).file_key == ""


def test_a_body_claiming_more_than_the_limit_is_413_before_it_is_read(world, api_as, files, settings):
    settings.ETL_MAX_UPLOAD_BYTES = 1000
    source = _csv_source(world.org_a)
    body = encode_multipart(BOUNDARY, {"file": ContentFile(b"a,b\n1,2\n", name="x.csv")})
    response = api_as(world.admin_a).generic(
        "POST",
        f"/api/v1/etl/sources/{source.pk}/file",
        body,
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH=str(1000 + 64 * 1024 + 1),  # a claim; the body itself is small
        **{"wsgi.input": _Unreadable()},
    )
    _assert_too_large(response, 1000)
    assert _stored_files(settings.MEDIA_ROOT) == []


class _Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


def test_a_part_whose_content_length_understates_its_size_is_stopped_by_the_counted_bytes(
    world, api_as, files, settings
):
    settings.ETL_MAX_UPLOAD_BYTES = 10_000
    source = _csv_source(world.org_a)
    content = b"a,b\n" + b"1,2\n" * 5000  # 20,004 bytes, under the framing allowance
    body = (
        (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="x.csv"\r\n'
            "Content-Type: text/csv\r\n"
            "Content-Length: 10\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    response = api_as(world.admin_a).generic(
        "POST", f"/api/v1/etl/sources/{source.pk}/file", body, content_type=MULTIPART_CONTENT
    )
    _assert_too_large(response, 10_000)
    assert _stored_files(settings.MEDIA_ROOT) == []


def test_a_request_whose_content_length_understates_its_body_stores_nothing_it_did_not_read(
    world, api_as, files, settings
):
    """WSGI hands the application only the claimed bytes: the rest of the body is never seen,
    and the truncated form (no closing boundary) is refused, not stored as a shorter file."""
    settings.ETL_MAX_UPLOAD_BYTES = 10_000
    source = _csv_source(world.org_a)
    body = encode_multipart(BOUNDARY, {"file": ContentFile(b"a,b\n" + b"1,2\n" * 50_000, name="x.csv")})
    response = api_as(world.admin_a).generic(
        "POST",
        f"/api/v1/etl/sources/{source.pk}/file",
        body,
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH="5000",
    )
    # The truncated part has no closing boundary: the parser drops it, so no file arrived.
    assert response.status_code == 422, response.content
    assert response.json()["error"]["details"] == {"fields": {"file": ["Required."]}}
    assert _stored_files(settings.MEDIA_ROOT) == []


# --- Content --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,content,message",
    [
        ("csv", b"", "The file is empty."),
        ("csv", b"id,title\n1,caf\xe9\n", "The file is not UTF-8 text (line 2)."),
        ("csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "The file is not UTF-8 text (line 1)."),
        ("csv", b"\n1,2\n", "The CSV has no header row (line 1)."),
        ("csv", b"id,,title\n1,2,3\n", "The CSV header row has an empty column name (line 1)."),
        ("csv", b"id,title,id\n1,2,3\n", "The CSV header row repeats the column names ['id'] (line 1)."),
        ("csv", b'id,title\n1,ok\n2,"never closed\n', "The CSV cannot be parsed (line 3): unexpected end"),
        ("rss", b"id,title\n1,not a feed\n", "The file is not well-formed XML (line 1)"),
        ("rss", b"<html><body>hello</body></html>", "The file is not an RSS or Atom feed"),
        ("rss", b"<?xml version='1.0'?><nothing/>", "The file is not an RSS or Atom feed"),
    ],
)
def test_wrong_content_is_422_naming_what_is_wrong_and_nothing_is_stored(
    world, api_as, files, settings, kind, content, message
):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Wrong", kind=kind, config={}, field_mapping=CSV_MAPPING if kind == "csv" else RSS_MAPPING
        )
    response = _upload(api_as(world.admin_a), source.pk, content, name=f"x.{kind}")
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith(message)
    assert "file" in error["details"]["fields"]
    assert _stored_files(settings.MEDIA_ROOT) == []


def test_a_csv_source_with_an_unusable_delimiter_is_422_not_a_server_error(world, api_as, files):
    source = _csv_source(world.org_a)
    with tenant_context(world.org_a):
        DataSource.objects.filter(pk=source.pk).update(config={"delimiter": ";;"})
    response = _upload(api_as(world.admin_a), source.pk, ARTICLES)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("config.delimiter must be one character")


def test_a_request_without_the_file_field_is_422(world, api_as, files):
    source = _csv_source(world.org_a)
    response = api_as(world.admin_a).post(
        f"/api/v1/etl/sources/{source.pk}/file", {"other": "x"}, format="multipart"
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"] == {"file": ["Required."]}


def test_a_csv_with_a_byte_order_mark_is_accepted(world, api_as, files):
    source = _csv_source(world.org_a)
    assert _upload(api_as(world.admin_a), source.pk, b"\xef\xbb\xbf" + ARTICLES).status_code == 200


# --- Server-side paths ----------------------------------------------------------------------------


def _path_attempts(files: Path, world) -> dict[str, str]:
    own, other = files, files.parent / world.org_b.schema_name
    (own / "link-to-b.csv").symlink_to(other / "articles.csv")
    (own / "link-to-b-dir").symlink_to(other, target_is_directory=True)
    return {
        "absolute path to B's file": str(other / "articles.csv"),
        "absolute path to A's own file": str(own / "articles.csv"),
        "dot-dot into B's directory": f"../{world.org_b.schema_name}/articles.csv",
        "dot-dot inside then out": f"sub/../../{world.org_b.schema_name}/articles.csv",
        "symlink to B's file": "link-to-b.csv",
        "symlink to B's directory": "link-to-b-dir/articles.csv",
        "missing file": "no-such-file.csv",
        "the directory itself": ".",
        "server file": "../../../../../../etc/passwd",
    }


def test_naming_another_organisations_file_by_path_gives_the_same_error_as_a_missing_file(
    world, api_as, files
):
    client = api_as(world.admin_a)
    errors = {}
    for label, path in _path_attempts(files, world).items():
        body = {"name": "Probe", "kind": "csv", "config": {"path": path}, "field_mapping": CSV_MAPPING}
        response = client.post("/api/v1/etl/sources", body, format="json")
        assert response.status_code == 422, label
        errors[label] = response.json()["error"]
    assert all(error == errors["missing file"] for error in errors.values()), errors
    assert errors["missing file"]["message"] == NO_SUCH_FILE
    with tenant_context(world.org_a):
        assert not DataSource.objects.exists()
    # Its own file, named relative to its own directory, is fine.
    ok = {"name": "Own", "kind": "csv", "config": {"path": "articles.csv"}, "field_mapping": CSV_MAPPING}
    assert client.post("/api/v1/etl/sources", ok, format="json").status_code == 201


def test_a_path_swapped_for_a_symlink_to_another_organisation_fails_the_run_with_the_same_error(world, files):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Own", kind="csv", config={"path": "articles.csv"}, field_mapping=CSV_MAPPING
        )
        os.remove(files / "articles.csv")
        (files / "articles.csv").symlink_to(files.parent / world.org_b.schema_name / "articles.csv")
        run = etl_run_source(source=source)
    assert run.status == "failed"
    assert run.error == NO_SUCH_FILE
    assert run.fetched == 0


def test_a_stored_file_key_outside_the_organisations_location_is_never_read(world, files):
    """Defence in depth: the key is the server's choice, and still checked when read."""
    source_b = _csv_source(world.org_b)
    with tenant_context(world.org_b):
        etl_source_file_upload(source=source_b, file=ContentFile(ARTICLES, name="b.csv"))
        key_b = DataSource.objects.get(pk=source_b.pk).file_key
    source_a = _csv_source(world.org_a)
    with tenant_context(world.org_a):
        DataSource.objects.filter(pk=source_a.pk).update(file_key=key_b)
        run = etl_run_source(source=DataSource.objects.get(pk=source_a.pk))
    assert run.status == "failed"
    assert run.fetched == 0
    assert "upload it again" in run.error
