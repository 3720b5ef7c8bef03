"""The data page's file upload is the same work as POST /api/v1/etl/sources/{id}/file (up to
ETL_MAX_UPLOAD_BYTES read, parsed and written to storage), so it must count against the
organisation's one rate-limit budget like the API upload does; otherwise the page is an
unmetered way round the API's limit."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django_tenants.utils import tenant_context

from etl.models import DataSource
from etl.services import etl_source_create
from etl.tests.conftest import CSV_MAPPING, SAMPLE
from nexus.redis import get_redis, redis_key

pytestmark = pytest.mark.django_db

LIMIT = 3
ARTICLES = (SAMPLE / "articles.csv").read_bytes()


@pytest.fixture
def admin_page(world, files):
    org = world.org_a
    org.api_rate_limit = LIMIT
    org.save(update_fields=["api_rate_limit"])
    key = redis_key("ratelimit", str(org.id))
    get_redis().delete(key)
    client = Client()
    client.force_login(world.admin_a)
    yield client
    get_redis().delete(key)


def test_page_upload_counts_against_the_organisation_budget(world, admin_page):
    with tenant_context(world.org_a):
        source = etl_source_create(name="Uploads", kind="csv", config={}, field_mapping=CSV_MAPPING)
    # The API upload is counted: the budget is spent after LIMIT of them, then 429.
    for _ in range(LIMIT):
        upload = SimpleUploadedFile("a.csv", ARTICLES, content_type="text/csv")
        assert admin_page.post(f"/api/v1/etl/sources/{source.pk}/file", {"file": upload}).status_code == 200
    upload = SimpleUploadedFile("a.csv", ARTICLES, content_type="text/csv")
    assert admin_page.post(f"/api/v1/etl/sources/{source.pk}/file", {"file": upload}).status_code == 429

    # The same upload through the page, with the same session, must be refused as well.
    with tenant_context(world.org_a):
        uploaded_before = DataSource.objects.get(pk=source.pk).file_uploaded_at
    statuses = []
    for _ in range(5):
        upload = SimpleUploadedFile("b.csv", ARTICLES, content_type="text/csv")
        statuses.append(admin_page.post(f"/data/sources/{source.pk}/file", {"file": upload}).status_code)
    with tenant_context(world.org_a):
        uploaded_after = DataSource.objects.get(pk=source.pk).file_uploaded_at
    assert statuses == [429] * 5, statuses
    assert uploaded_after == uploaded_before
