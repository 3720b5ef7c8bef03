"""A run queued through the API executes on a real Celery worker."""

import time

from django.core.files import File
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from etl.models import EtlRun, Record
from etl.services import etl_source_create, etl_source_file_upload
from etl.tests.conftest import CSV_MAPPING, SAMPLE
from tenants.tests.helpers import bearer_for


def test_run_now_executes_on_the_worker(live_org, celery_worker):
    with tenant_context(live_org):
        source = etl_source_create(
            name="Articles",
            kind="csv",
            config={},
            field_mapping=CSV_MAPPING,
        )
        with (SAMPLE / "articles.csv").open("rb") as sample:
            etl_source_file_upload(source=source, file=File(sample))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(live_org.admin)}")
    run_id = client.post(f"/api/v1/etl/sources/{source.pk}/run").json()["data"]["run_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with tenant_context(live_org):
            run = EtlRun.objects.get(pk=run_id)
        if run.status in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert run.status == "succeeded", run.error
    assert run.trigger == "manual"
    assert run.inserted == 7
    with tenant_context(live_org):
        assert Record.objects.count() == 7
