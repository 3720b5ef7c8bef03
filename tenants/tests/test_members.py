"""Organisation endpoints: members read, admins change roles and remove members, and an
organisation always keeps an admin."""

import pytest

from tenants.models import Role
from tenants.tests.factories import UserFactory
from tenants.tests.helpers import bearer_for

pytestmark = pytest.mark.django_db


def test_any_member_reads_the_organisation(world, api_as):
    data = api_as(world.member_a).get("/api/v1/org").json()["data"]
    assert data["name"] == "Org A"
    assert data["email_domain"] == "org-a.test"
    assert data["personal"] is False


def test_member_list_search_and_role_filter(world, api_as):
    client = api_as(world.member_a)
    assert [m["email"] for m in client.get("/api/v1/org/members?search=ADMIN").json()["data"]] == [
        "admin@org-a.test"
    ]
    assert [m["role"] for m in client.get("/api/v1/org/members?role=member").json()["data"]] == ["member"]


def test_member_list_omits_removed_members(world, api_as):
    UserFactory(organisation=world.org_a, email="gone@org-a.test", is_active=False)
    emails = [m["email"] for m in api_as(world.member_a).get("/api/v1/org/members").json()["data"]]
    assert "gone@org-a.test" not in emails


@pytest.mark.parametrize(
    "method,payload",
    [("patch", {"role": "admin"}), ("delete", None)],
)
def test_member_cannot_call_admin_endpoints(world, api_as, method, payload):
    client = api_as(world.member_a)
    response = getattr(client, method)(f"/api/v1/org/members/{world.admin_a.pk}", payload, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    world.admin_a.refresh_from_db()
    assert world.admin_a.role == Role.ADMIN
    assert world.admin_a.is_active


def test_admin_promotes_and_demotes(world, api_as):
    client = api_as(world.admin_a)
    url = f"/api/v1/org/members/{world.member_a.pk}"
    assert client.patch(url, {"role": "admin"}, format="json").json()["data"]["role"] == "admin"
    # With two admins, the first can now step down.
    response = client.patch(f"/api/v1/org/members/{world.admin_a.pk}", {"role": "member"}, format="json")
    assert response.status_code == 200
    world.admin_a.refresh_from_db()
    assert world.admin_a.role == Role.MEMBER


def test_last_admin_cannot_demote_themselves(world, api_as):
    response = api_as(world.admin_a).patch(
        f"/api/v1/org/members/{world.admin_a.pk}", {"role": "member"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
    assert response.json()["error"]["details"] == {"reason": "last_admin"}
    world.admin_a.refresh_from_db()
    assert world.admin_a.role == Role.ADMIN


def test_last_admin_cannot_remove_themselves(world, api_as):
    response = api_as(world.admin_a).delete(f"/api/v1/org/members/{world.admin_a.pk}")
    assert response.status_code == 409
    world.admin_a.refresh_from_db()
    assert world.admin_a.is_active


def test_admin_removes_member_and_their_token_stops_working(world, api_as):
    member_token = bearer_for(world.member_a)
    response = api_as(world.admin_a).delete(f"/api/v1/org/members/{world.member_a.pk}")
    assert response.status_code == 204
    world.member_a.refresh_from_db()
    assert world.member_a.organisation_id is None
    assert not world.member_a.is_active

    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token}")
    assert client.get("/api/v1/org").status_code == 401


def test_removing_a_member_revokes_their_refresh_tokens(world, api_as):
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    from tenants.authentication import refresh_token_for

    refresh_token_for(world.member_a)
    api_as(world.admin_a).delete(f"/api/v1/org/members/{world.member_a.pk}")
    outstanding = OutstandingToken.objects.filter(user=world.member_a)
    assert outstanding.exists()
    assert all(hasattr(token, "blacklistedtoken") for token in outstanding)


def test_removed_member_is_404_afterwards(world, api_as):
    client = api_as(world.admin_a)
    client.delete(f"/api/v1/org/members/{world.member_a.pk}")
    assert client.delete(f"/api/v1/org/members/{world.member_a.pk}").status_code == 404


def test_operator_without_organisation_cannot_use_tenant_endpoints(world):
    from rest_framework.test import APIClient

    operator = UserFactory(organisation=None, email="ops@nexus.test", is_staff=True, is_superuser=True)
    client = APIClient()
    client.force_login(operator)
    response = client.get("/api/v1/org/members")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
