"""Organisation 1's caller can never reach organisation 2's users or rows."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django_tenants.utils import tenant_context

pytestmark = pytest.mark.django_db


def test_member_list_shows_only_own_organisation(world, api_as):
    response = api_as(world.admin_a).get("/api/v1/org/members")
    assert response.status_code == 200
    emails = {m["email"] for m in response.json()["data"]}
    assert emails == {"admin@org-a.test", "member@org-a.test"}
    assert response.json()["meta"]["total"] == 2


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_other_organisations_member_is_404(world, api_as, method):
    client = api_as(world.admin_a)
    response = getattr(client, method)(
        f"/api/v1/org/members/{world.member_b.pk}", {"role": "admin"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    world.member_b.refresh_from_db()
    assert world.member_b.role == "member"
    assert world.member_b.is_active


def test_unknown_member_and_foreign_member_give_identical_answers(world, api_as):
    client = api_as(world.admin_a)
    foreign = client.delete(f"/api/v1/org/members/{world.member_b.pk}").json()["error"]
    unknown = client.delete("/api/v1/org/members/00000000-0000-0000-0000-000000000000").json()["error"]
    assert foreign == unknown


def test_org_endpoint_returns_callers_organisation(world, api_as):
    assert api_as(world.member_b).get("/api/v1/org").json()["data"]["id"] == str(world.org_b.id)
    assert api_as(world.member_a).get("/api/v1/org").json()["data"]["id"] == str(world.org_a.id)


def test_query_in_one_schema_cannot_return_another_schemas_rows(world):
    with tenant_context(world.org_b):
        ContentType.objects.create(app_label="isolation", model="probe")
        assert ContentType.objects.filter(app_label="isolation").count() == 1
    with tenant_context(world.org_a):
        assert not ContentType.objects.filter(app_label="isolation").exists()
