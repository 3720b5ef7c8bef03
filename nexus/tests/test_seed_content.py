"""The demo content command: credits and sample sources, once."""

from io import StringIO

import pytest
from django.core.management import call_command
from django_tenants.utils import tenant_context

from billing.selectors import credits_balance
from etl.models import DataSource
from etl.services import etl_run_source
from tenants.models import Organisation

pytestmark = pytest.mark.django_db


def test_seed_demo_content_is_idempotent_and_its_sources_run(
    broker, django_capture_on_commit_callbacks, settings
):
    settings.DEBUG = True  # demo data exists only on development systems
    call_command("seed_demo", stdout=StringIO())
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo_content", stdout=out)
    # The sample sources' first runs are queued at once: 2 sources in each of 2 organisations.
    assert [m.task for m in broker.messages].count("etl.execute_run") == 4
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo_content", stdout=out)
    assert [m.task for m in broker.messages].count("etl.execute_run") == 4  # nothing more
    assert "acme-corp: 500 credits, 2 data sources" in out.getvalue()
    org = Organisation.objects.get(email_domain="acme.test")
    with tenant_context(org):
        assert credits_balance() == 500
        assert DataSource.objects.count() == 2
        for source in DataSource.objects.all():
            # Uploaded into the organisation's own storage location, not named by a server path.
            assert source.config == {}
            assert source.file_key.startswith(f"{org.schema_name}/etl/{source.pk}/")
            assert etl_run_source(source=source).status == "succeeded"
