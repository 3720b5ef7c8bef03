"""Per-organisation caps and source bounds: an organisation cannot hold more than its share
(sources, webhook endpoints) or ask for a pace and a size that would hold a worker for days."""

import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

from etl.models import DataSource
from etl.tests.conftest import API_MAPPING, CSV_MAPPING
from nexus.tests.live import parallel_api_calls
from tenants.models import Organisation, User
from tenants.tests.helpers import bearer_for
from webhooks.models import WebhookEndpoint
from webhooks.tests.receiver import Receiver


def _csv(files, name="Articles"):
    return {
        "name": name,
        "kind": "csv",
        "config": {"path": "articles.csv"},
        "field_mapping": CSV_MAPPING,
    }


@pytest.mark.django_db
@override_settings(ORG_MAX_SOURCES=2)
def test_a_source_over_the_cap_is_409_limit_reached_and_nothing_is_written(world, api_as, files):
    client = api_as(world.admin_a)
    for n in range(2):
        assert client.post("/api/v1/etl/sources", _csv(files, f"S{n}"), format="json").status_code == 201
    response = client.post("/api/v1/etl/sources", _csv(files, "One too many"), format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "LIMIT_REACHED"
    assert error["message"] == (
        "This organisation may have at most 2 data sources; delete one or ask an operator to raise the limit."
    )
    assert error["details"] == {"limit": "sources", "cap": 2, "current": 2}
    with tenant_context(world.org_a):
        assert DataSource.objects.count() == 2
    # Another organisation's count is its own.
    assert api_as(world.admin_b).post("/api/v1/etl/sources", _csv(files), format="json").status_code == 201


@pytest.mark.django_db
@override_settings(ORG_MAX_WEBHOOK_ENDPOINTS=1)
def test_a_webhook_endpoint_over_the_cap_is_409_limit_reached(world, api_as):
    client = api_as(world.admin_a)
    with Receiver() as receiver:
        body = {"url": receiver.hook_url, "event_types": ["job.completed"]}
        assert client.post("/api/v1/webhooks", body, format="json").status_code == 201
        response = client.post("/api/v1/webhooks", body, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "LIMIT_REACHED"
    assert response.json()["error"]["details"]["limit"] == "webhook_endpoints"
    with tenant_context(world.org_a):
        assert WebhookEndpoint.objects.count() == 1


@pytest.mark.django_db
def test_an_operator_sets_an_organisations_own_cap_in_the_admin(world, client, api_as, files):
    operator = User.objects.create_superuser("root@nexus.test", "operator-password-123")
    client.force_login(operator)
    page = client.get(f"/admin/tenants/organisation/{world.org_a.pk}/change/")
    form = page.context["adminform"].form
    assert {"max_sources", "max_webhook_endpoints", "max_concurrent_runs"} <= set(form.fields)
    data = {name: form.initial.get(name) for name in form.fields if form.initial.get(name) is not None}
    data.update({"max_sources": "1", "is_active": "on"})
    assert client.post(f"/admin/tenants/organisation/{world.org_a.pk}/change/", data).status_code == 302
    assert Organisation.objects.get(pk=world.org_a.pk).max_sources == 1
    admin = api_as(world.admin_a)
    assert admin.post("/api/v1/etl/sources", _csv(files), format="json").status_code == 201
    over = admin.post("/api/v1/etl/sources", _csv(files, "Second"), format="json")
    assert over.status_code == 409
    assert over.json()["error"]["details"]["cap"] == 1
    # The default (20) still applies to every other organisation.
    assert api_as(world.admin_b).post("/api/v1/etl/sources", _csv(files), format="json").status_code == 201
    assert (
        api_as(world.admin_b).post("/api/v1/etl/sources", _csv(files, "2"), format="json").status_code == 201
    )


def test_racing_creations_never_pass_the_cap(live_org, settings):
    """Six requests at the same moment for the last two places: exactly two win."""
    Organisation.objects.filter(pk=live_org.pk).update(max_sources=2)
    results = parallel_api_calls(
        bearer_for(live_org.admin),
        # No file: a CSV source may wait for its upload, and the race is about the count alone.
        lambda client: (
            client.post("/api/v1/etl/sources", {**_csv(None), "config": {}}, format="json").status_code
        ),
        6,
    )
    assert sorted(results) == [201, 201, 409, 409, 409, 409]
    with tenant_context(live_org):
        assert DataSource.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"requests_per_second": 0.1}, "greater than or equal to 0.2"),
        ({"requests_per_second": 0}, "greater than or equal to 0.2"),
        ({"requests_per_second": 101}, "less than or equal to 100"),
        ({"config": {"max_pages": 10_001}}, "config.max_pages must be a whole number from 1 to 10000"),
        ({"config": {"max_pages": 0}}, "config.max_pages must be a whole number from 1 to 10000"),
        ({"config": {"max_pages": "all"}}, "config.max_pages must be a whole number from 1 to 10000"),
        ({"config": {"max_pages": True}}, "config.max_pages must be a whole number from 1 to 10000"),
    ],
)
def test_too_slow_a_pace_or_too_many_pages_is_422_at_save(world, api_as, mock_api, overrides, message):
    body = {"name": "Slow", "kind": "api", "config": {"url": mock_api.url}, "field_mapping": API_MAPPING}
    config = {**body["config"], **overrides.pop("config", {})}
    response = api_as(world.admin_a).post(
        "/api/v1/etl/sources", {**body, **overrides, "config": config}, format="json"
    )
    assert response.status_code == 422, response.json()
    assert message in response.content.decode()
    with tenant_context(world.org_a):
        assert not DataSource.objects.exists()


@pytest.mark.django_db
def test_a_patch_cannot_slow_a_source_below_the_minimum_pace(world, api_as, mock_api):
    client = api_as(world.admin_a)
    body = {
        "name": "Items",
        "kind": "api",
        "config": {"url": mock_api.url, "max_pages": 50},
        "field_mapping": API_MAPPING,
    }
    created = client.post("/api/v1/etl/sources", body, format="json")
    assert created.status_code == 201
    assert created.json()["data"]["config"]["max_pages"] == 50
    source_id = created.json()["data"]["id"]
    slowed = client.patch(f"/api/v1/etl/sources/{source_id}", {"requests_per_second": 0.19}, format="json")
    assert slowed.status_code == 422
    with tenant_context(world.org_a):
        assert DataSource.objects.get(pk=source_id).requests_per_second == 5.0
