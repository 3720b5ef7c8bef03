"""The operators' admin: organisations with member counts, and creation through the service."""

import pytest
from django.db import connection
from django_tenants.utils import schema_exists

from tenants.models import Organisation, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    operator = User.objects.create_superuser("root@nexus.test", "operator-password-123")
    client.force_login(operator)
    return client


def test_organisation_list_shows_member_counts_and_searches(operator_client, world):
    response = operator_client.get("/admin/tenants/organisation/?q=org-a")
    assert response.status_code == 200
    rows = response.context["cl"].result_list
    assert [org.slug for org in rows] == ["org-a"]
    assert rows[0].member_count == 2


def test_organisation_list_filters_by_kind(operator_client, world):
    response = operator_client.get("/admin/tenants/organisation/?kind=personal")
    assert all(org.email_domain is None for org in response.context["cl"].result_list)


def test_creating_an_organisation_in_the_admin_creates_its_schema(operator_client, world):
    response = operator_client.post(
        "/admin/tenants/organisation/add/",
        {
            "name": "Admin Made",
            "email_domain": "adminmade.example",
            "plan": "pro",
            "is_active": "on",
            "api_rate_limit": "500",
        },
    )
    assert response.status_code == 302, response.content
    org = Organisation.objects.get(email_domain="adminmade.example")
    assert org.plan == "pro"
    assert org.api_rate_limit == 500
    connection.set_schema_to_public()
    assert schema_exists(org.schema_name)


def test_user_list_searches_by_organisation(operator_client, world):
    response = operator_client.get("/admin/tenants/user/?q=org-b")
    emails = {u.email for u in response.context["cl"].result_list}
    assert emails == {"admin@org-b.test", "member@org-b.test"}


def test_operator_changes_an_organisations_rate_limit(operator_client, world):
    page = operator_client.get(f"/admin/tenants/organisation/{world.org_a.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields if form.initial.get(name) is not None}
    data.update({"api_rate_limit": "250", "is_active": "on"})
    response = operator_client.post(f"/admin/tenants/organisation/{world.org_a.pk}/change/", data)
    assert response.status_code == 302, response.content
    world.org_a.refresh_from_db()
    assert world.org_a.api_rate_limit == 250
