"""The data page's source forms and file upload: the same services and rules as the API,
for people (admins only, errors on the form, HTMX and plain forms)."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django_tenants.utils import tenant_context

from etl.models import DataSource
from etl.owned import NO_SUCH_FILE
from etl.tests.conftest import CSV_MAPPING, SAMPLE
from etl.tests.factories import csv_source_create
from etl.tests.test_files import _stored_files

pytestmark = pytest.mark.django_db

ARTICLES = (SAMPLE / "articles.csv").read_bytes()


def _client(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _form(**overrides) -> dict:
    return {
        "name": "Articles",
        "kind": "csv",
        "url": "",
        "path": "",
        "schedule_minutes": "30",
        "enabled": "on",
        "field_mapping": json.dumps(CSV_MAPPING),
        **overrides,
    }


def _source(org, **kwargs) -> DataSource:
    with tenant_context(org):
        return csv_source_create(name="Uploads", **kwargs)


def test_an_admin_adds_a_csv_source_without_path_or_url_and_edits_it(world, files):
    client = _client(world.admin_a)
    assert "Add a data source" in client.get("/data/sources/new").content.decode()
    response = client.post("/data/sources/new", _form(), follow=True)
    assert response.status_code == 200
    assert "Articles: source added. Upload its file below." in response.content.decode()
    with tenant_context(world.org_a):
        source = DataSource.objects.get()
    assert (source.kind, source.config, source.schedule_minutes, source.enabled) == ("csv", {}, 30, True)
    edit = client.get(f"/data/sources/{source.pk}/edit").content.decode()
    assert 'value="Articles"' in edit
    saved = client.post(
        f"/data/sources/{source.pk}/edit",
        _form(name="Renamed", kind="rss", path="articles.csv", schedule_minutes="5", enabled=""),
        follow=True,
    )
    assert "Renamed: saved." in saved.content.decode()
    with tenant_context(world.org_a):
        source.refresh_from_db()
    assert (source.name, source.kind, source.config, source.schedule_minutes, source.enabled) == (
        "Renamed",
        "csv",  # a source's kind never changes
        {"path": "articles.csv"},
        5,
        False,
    )


def test_an_admin_adds_an_api_source_with_its_key(world, files):
    client = _client(world.admin_a)
    response = client.post(
        "/data/sources/new",
        _form(
            name="Items",
            kind="api",
            url="http://127.0.0.1:9/items",
            records_path="items",
            page_size="50",
            api_key_header="X-Key",
            api_key="secret-value",
            field_mapping=json.dumps({"external_id": "id", "title": "title"}),
        ),
    )
    assert response.status_code == 302
    with tenant_context(world.org_a):
        source = DataSource.objects.get()
    assert source.config == {
        "url": "http://127.0.0.1:9/items",
        "records_path": "items",
        "page_size": 50,
        "api_key_header": "X-Key",
    }
    assert source.api_key_encrypted
    assert "secret-value" not in source.api_key_encrypted
    assert (
        "secret-value" not in _client(world.admin_a).get(f"/data/sources/{source.pk}/edit").content.decode()
    )


@pytest.mark.parametrize(
    "overrides,shown",
    [
        ({"field_mapping": "not json"}, "Write the mapping as a JSON object."),
        ({"field_mapping": json.dumps({"title": "Headline"})}, "external_id"),
        ({"path": "../org_b/articles.csv"}, NO_SUCH_FILE),
        ({"path": "/etc/passwd"}, NO_SUCH_FILE),
        ({"path": "articles.csv", "url": "http://127.0.0.1:9/a.csv"}, "at most one of"),
        ({"schedule_minutes": "0"}, "greater than or equal to 1"),
        ({"kind": "api"}, "An API source needs config.url."),
    ],
)
def test_errors_are_shown_on_the_form_and_nothing_is_created(world, files, overrides, shown):
    response = _client(world.admin_a).post("/data/sources/new", _form(**overrides))
    assert response.status_code == 422
    assert shown in response.content.decode().replace("&#x27;", "'")
    with tenant_context(world.org_a):
        assert not DataSource.objects.exists()


def test_members_cannot_add_edit_or_upload(world, files, settings):
    source = _source(world.org_a)
    client = _client(world.member_a)
    assert client.get("/data/sources/new").status_code == 403
    assert client.post("/data/sources/new", _form()).status_code == 403
    assert client.post(f"/data/sources/{source.pk}/edit", _form(name="Mine")).status_code == 403
    upload = client.post(f"/data/sources/{source.pk}/file", {"file": ContentFile(ARTICLES, name="a.csv")})
    assert upload.status_code == 403
    assert _stored_files(settings.MEDIA_ROOT) == []
    member_page = client.get("/data").content.decode()
    assert "/data/sources/new" not in member_page
    assert 'type="file"' not in member_page


def test_another_organisations_source_is_a_404_page_for_edit_and_upload(world, files, settings):
    source_b = _source(world.org_b)
    client = _client(world.admin_a)
    assert client.get(f"/data/sources/{source_b.pk}/edit").status_code == 404
    assert client.post(f"/data/sources/{source_b.pk}/edit", _form(name="Taken")).status_code == 404
    upload = client.post(f"/data/sources/{source_b.pk}/file", {"file": ContentFile(ARTICLES, name="a.csv")})
    assert upload.status_code == 404
    assert _stored_files(settings.MEDIA_ROOT) == []
    with tenant_context(world.org_b):
        assert DataSource.objects.get(pk=source_b.pk).name == "Uploads"


def test_uploading_without_javascript_reloads_the_page_with_a_message(world, files, settings):
    source = _source(world.org_a)
    client = _client(world.admin_a)
    assert 'enctype="multipart/form-data"' in client.get("/data").content.decode()
    response = client.post(
        f"/data/sources/{source.pk}/file", {"file": ContentFile(ARTICLES, name="articles.csv")}, follow=True
    )
    page = response.content.decode()
    assert f"Uploads: articles.csv uploaded ({len(ARTICLES)} bytes)" in page
    assert _stored_files(settings.MEDIA_ROOT) == [f"{world.org_a.schema_name}/etl/{source.pk}/articles.csv"]


def test_uploading_with_htmx_replaces_the_file_cell(world, files, settings):
    source = _source(world.org_a)
    client = _client(world.admin_a)
    ok = client.post(
        f"/data/sources/{source.pk}/file",
        {"file": ContentFile(ARTICLES, name="articles.csv")},
        HTTP_HX_REQUEST="true",
    )
    fragment = ok.content.decode()
    assert ok.status_code == 200
    assert fragment.startswith(f'<td data-label="File" id="file-{source.pk}"')
    assert "data-upload-notice" in fragment
    assert "articles.csv" in fragment
    bad = client.post(
        f"/data/sources/{source.pk}/file",
        {"file": ContentFile(b"id,title\n1,caf\xe9\n", name="bad.csv")},
        HTTP_HX_REQUEST="true",
    )
    assert "The file is not UTF-8 text (line 2)." in bad.content.decode()
    assert "data-upload-error" in bad.content.decode()
    assert _stored_files(settings.MEDIA_ROOT) == [f"{world.org_a.schema_name}/etl/{source.pk}/articles.csv"]


def test_an_oversized_upload_from_the_page_is_refused_and_nothing_is_stored(world, files, settings):
    settings.ETL_MAX_UPLOAD_BYTES = 1000
    source = _source(world.org_a)
    response = _client(world.admin_a).post(
        f"/data/sources/{source.pk}/file",
        {"file": ContentFile(b"a,b\n" + b"1,2\n" * 1000, name="big.csv")},
        follow=True,
    )
    assert "larger than the upload limit of 1000 bytes" in response.content.decode()
    assert _stored_files(settings.MEDIA_ROOT) == []


def test_an_upload_without_the_csrf_token_is_refused(world, files, settings):
    source = _source(world.org_a)
    client = _client(world.admin_a, enforce_csrf_checks=True)
    response = client.post(f"/data/sources/{source.pk}/file", {"file": ContentFile(ARTICLES, name="a.csv")})
    assert response.status_code == 403
    assert _stored_files(settings.MEDIA_ROOT) == []
