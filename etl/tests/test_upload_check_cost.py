"""Checking an uploaded CSV happens inside the web request (POST
/api/v1/etl/sources/{id}/file), so it must be linear in the file: looking for repeated
header names with `names.count(name)` for every name was quadratic in the number of
columns (80,000 distinct columns, about 500 KB, took most of a minute; the 20 MiB limit
allows millions). The bounds below guard against that class of cost, not a speed target."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import tenant_context

from etl.services import etl_source_create
from etl.tests.conftest import CSV_MAPPING
from etl.uploads import check_csv

pytestmark = pytest.mark.django_db

WIDE_HEADER = (",".join(f"c{i}" for i in range(80_000)) + "\n1\n").encode()


def test_check_csv_is_linear_in_the_number_of_columns():
    started = time.monotonic()
    check_csv(WIDE_HEADER)
    assert time.monotonic() - started < 5.0


def test_an_admin_cannot_hold_a_web_worker_with_a_wide_csv_header(world, files, api_as):
    with tenant_context(world.org_a):
        source = etl_source_create(name="Wide", kind="csv", config={}, field_mapping=CSV_MAPPING)
    upload = SimpleUploadedFile("wide.csv", WIDE_HEADER, content_type="text/csv")
    started = time.monotonic()
    response = api_as(world.admin_a).post(
        f"/api/v1/etl/sources/{source.pk}/file", {"file": upload}, format="multipart"
    )
    elapsed = time.monotonic() - started
    assert response.status_code in (200, 422)
    assert elapsed < 5.0, f"checking a 80,000-column header took {elapsed:.1f} s"
