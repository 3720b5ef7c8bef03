"""Every action the audit log lists appears in it once, with its actor: each is driven
through its real entry point (the API or a page, as a person or a program would; Stripe's
webhook; the operators' admin and commands), then the organisation's log is read back.
Events of a request carry its address, user agent and request id; settings carry their
before and after, and never a secret."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from auditlog.actions import ACTIONS
from auditlog.models import AuditEvent
from billing.public.models import CreditPack
from billing.tests.stripe_stub import WEBHOOK_SECRET, StripeStub, signed
from billing.tests.stripe_stub import event as stripe_event
from etl.samples import ARTICLES_CSV_MAPPING, MOCK_API_MAPPING, SAMPLE_DIR
from tenants.models import Invitation, Role, User
from tenants.services import keys as key_services
from tenants.services import member_change_role, user_create
from tenants.services.invitations import invitation_token
from tenants.tests.helpers import bearer_for

pytestmark = pytest.mark.django_db

UA = "AuditTest/1.0 (+https://nexus.test)"
IP = "127.0.0.1"
PASSWORD = "a-long-and-unusual-passphrase-42"  # nosec B105
COOKIE = settings.REFRESH_COOKIE_NAME

# Each test below names the actions it drives; together they must be every action.
COVERED: set[str] = set()


def covers(*actions: str):
    COVERED.update(actions)
    return lambda test: test


# --- Helpers ------------------------------------------------------------------------------------


def _api(user: User) -> APIClient:
    client = APIClient(HTTP_USER_AGENT=UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(user)}")
    return client


def _key_client(world, name: str, scopes: list[str]) -> APIClient:
    """A client calling with a new key of org A; the key is `client.key`."""
    key, secret = key_services.api_key_create(
        org=world.org_a, created_by=world.admin_a, name=name, scopes=scopes
    )
    client = APIClient(HTTP_USER_AGENT=UA)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    client.key = key
    return client


def _browser(user: User | None = None) -> Client:
    client = Client(HTTP_USER_AGENT=UA)
    if user is not None:
        client.force_login(user)
    return client


def _one(action: str, target_id=None, **filters) -> AuditEvent:
    """The only event of `action` (for that target): recorded once, never twice."""
    assert action in ACTIONS
    events = AuditEvent.objects.filter(action=action, **filters)
    if target_id is not None:
        events = events.filter(target_id=str(target_id))
    found = list(events)
    assert len(found) == 1, [(e.action, e.target_id, e.actor_label) for e in found]
    return found[0]


def _none(action: str, **filters) -> None:
    assert not AuditEvent.objects.filter(action=action, **filters).exists()


def _by(event: AuditEvent, kind: str, label: str, actor_id=None) -> None:
    assert (event.actor_kind, event.actor_label) == (kind, label)
    if actor_id is not None:
        assert event.actor_id == str(actor_id)


def _from(event: AuditEvent, response=None) -> None:
    """The event came from a request of the test client: its address, agent and id."""
    assert event.ip == IP
    assert event.user_agent == UA
    if response is not None:
        assert event.request_id == response["X-Request-ID"]


def _in(event: AuditEvent, org) -> None:
    assert event.organisation_id == (org.pk if org is not None else None)


def _nowhere(secret: str, events) -> None:
    """`secret` appears in no column of any of `events`."""
    for e in events:
        values = [e.actor_id, e.actor_label, e.target_id, e.target_label, e.user_agent, e.request_id]
        assert secret not in json.dumps(e.changes) + " ".join(values), e.action


def _ok(response, status: int = 200):
    assert response.status_code == status, getattr(response, "content", b"")[:2000]
    return response


# --- Members ------------------------------------------------------------------------------------


@covers("member.role_changed")
def test_a_role_change_is_recorded_with_before_and_after(world):
    response = _ok(
        _api(world.admin_a).patch(
            f"/api/v1/org/members/{world.member_a.pk}", {"role": "admin"}, format="json"
        )
    )
    event = _one("member.role_changed", world.member_a.pk)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, response)
    assert (event.target_type, event.target_label) == ("member", "member@org-a.test")
    assert event.changes == {"before": {"role": "member"}, "after": {"role": "admin"}}
    # Asking for the role they already have changes nothing and records nothing more.
    _ok(
        _api(world.admin_a).patch(
            f"/api/v1/org/members/{world.member_a.pk}", {"role": "admin"}, format="json"
        )
    )
    _one("member.role_changed", world.member_a.pk)


@covers("member.removed")
def test_a_removal_is_recorded(world):
    response = _ok(_api(world.admin_a).delete(f"/api/v1/org/members/{world.member_a.pk}"), 204)
    event = _one("member.removed", world.member_a.pk)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, response)
    assert event.changes == {
        "before": {"role": "member"},
        "after": {},
        "token_families_revoked": 0,
        "api_keys_revoked": 0,
        "invitations_revoked": 0,
    }
    # The sign-out that goes with it is part of this event, not one of its own.
    _none("auth.signed_out_everywhere", target_id=str(world.member_a.pk))


def test_removing_a_member_records_the_revocation_of_the_keys_they_created(world):
    member_change_role(org=world.org_a, member_id=world.member_a.pk, role=Role.ADMIN)
    world.member_a.refresh_from_db()
    key, _secret = key_services.api_key_create(
        org=world.org_a, created_by=world.member_a, name="theirs", scopes=["jobs:read"]
    )
    _ok(_api(world.admin_a).delete(f"/api/v1/org/members/{world.member_a.pk}"), 204)
    revoked = _one("api_key.revoked", key.pk)
    _by(revoked, "user", "user:admin@org-a.test", world.admin_a.pk)
    assert revoked.changes == {"reason": "creator_removed"}
    assert _one("member.removed", world.member_a.pk).changes["api_keys_revoked"] == 1


@covers("member.left")
def test_leaving_is_recorded_in_the_organisation_left(world):
    response = _ok(_api(world.member_a).post("/api/v1/org/leave"), 204)
    event = _one("member.left", world.member_a.pk)
    _in(event, world.org_a)
    _by(event, "user", "user:member@org-a.test", world.member_a.pk)
    _from(event, response)
    assert event.changes["before"] == {"role": "member"}


@covers("member.joined", "auth.signed_in")
def test_joining_by_google_sign_in_is_recorded(world, google):
    browser = _browser()
    response = google(browser, "newhire@org-a.test", hd="org-a.test")
    assert response.status_code == 302
    newhire = User.objects.get(email="newhire@org-a.test")
    assert newhire.organisation_id == world.org_a.pk
    joined = _one("member.joined", newhire.pk)
    _in(joined, world.org_a)
    _by(joined, "user", "user:newhire@org-a.test", newhire.pk)
    _from(joined, response)
    assert joined.changes == {"role": "member", "by": "domain"}
    signed_in = _one("auth.signed_in", newhire.pk)
    _in(signed_in, world.org_a)
    _by(signed_in, "user", "user:newhire@org-a.test", newhire.pk)
    _from(signed_in, response)
    assert signed_in.changes == {"method": "google"}


def test_joining_by_google_sign_in_from_an_invitation_is_recorded_once_in_the_organisation(
    world, google, broker
):
    created = _ok(
        _api(world.admin_a).post(
            "/api/v1/invitations", {"email": "friend@gmail.com", "role": "member"}, format="json"
        ),
        201,
    )
    invitation = Invitation.objects.get(pk=created.json()["data"]["id"])
    browser = _browser()
    start = browser.post(f"/invitations/{invitation_token(invitation)}/google")["Location"]
    response = google(browser, "friend@gmail.com", start=start)
    assert (response.status_code, response["Location"]) == (302, "/")
    friend = User.objects.get(email="friend@gmail.com")
    for action, target in (
        ("invitation.accepted", invitation.pk),
        ("member.joined", friend.pk),
        ("auth.signed_in", friend.pk),
    ):
        event = _one(action, target)
        _in(event, world.org_a)
        _by(event, "user", "user:friend@gmail.com", friend.pk)
        _from(event, response)
    assert _one("member.joined", friend.pk).changes["by"] == "invitation"
    assert _one("auth.signed_in", friend.pk).changes == {"method": "google"}


def test_a_google_sign_in_refused_for_want_of_an_invitation_is_recorded(world, google):
    _ok(_api(world.admin_a).patch("/api/v1/org", {"domain_auto_join": False}, format="json"))
    response = google(_browser(), "newhire@org-a.test", hd="org-a.test")
    assert response.status_code == 403
    assert not User.objects.filter(email="newhire@org-a.test").exists()
    event = _one("auth.sign_in_failed", target_label="newhire@org-a.test")
    # In the log of the organisation that refused them: its admins see who was turned away.
    _in(event, world.org_a)
    _by(event, "anonymous", "anonymous")
    _from(event, response)
    assert event.changes == {"reason": "invitation_required", "method": "google"}
    _none("member.joined")


# --- Organisation settings -----------------------------------------------------------------------


@covers("organisation.updated")
def test_an_admin_changing_domain_auto_join_is_recorded_with_before_and_after(world):
    client = _api(world.admin_a)
    response = _ok(client.patch("/api/v1/org", {"domain_auto_join": False}, format="json"))
    event = _one("organisation.updated", world.org_a.pk)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, response)
    assert (event.target_type, event.target_label) == ("organisation", "Org A")
    assert event.changes == {"before": {"domain_auto_join": True}, "after": {"domain_auto_join": False}}
    # The same value again is no change.
    _ok(client.patch("/api/v1/org", {"domain_auto_join": False}, format="json"))
    _one("organisation.updated", world.org_a.pk)


@pytest.fixture
def operator(world) -> User:
    return User.objects.create_superuser(f"ops-{uuid.uuid4().hex[:8]}@nexus.test", PASSWORD)


def test_an_operator_changing_the_rate_limit_is_recorded_as_the_operator(world, operator):
    browser = _browser(operator)
    url = f"/admin/tenants/organisation/{world.org_a.pk}/change/"
    form = browser.get(url).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields if form.initial.get(name) is not None}
    before = world.org_a.api_rate_limit
    data.update({"api_rate_limit": str(before + 150), "is_active": "on"})
    response = browser.post(url, data)
    assert response.status_code == 302, response.content[:3000]
    event = _one("organisation.updated", world.org_a.pk)
    _in(event, world.org_a)
    _by(event, "operator", f"operator:{operator.email}", operator.pk)
    _from(event, response)
    assert event.changes == {"before": {"api_rate_limit": before}, "after": {"api_rate_limit": before + 150}}


def _admin_form_data(browser: Client, url: str) -> dict:
    """What the admin's change form would post unchanged."""
    form = browser.get(url).context["adminform"].form
    data = {}
    for name in form.fields:
        value = form.initial.get(name)
        if value is None or name == "password":
            continue
        if isinstance(value, list | tuple) or hasattr(value, "all"):
            value = [str(getattr(v, "pk", v)) for v in value]
        data[name] = value
    return data


def test_an_operator_changing_a_users_role_is_recorded_as_the_operator(world, operator):
    browser = _browser(operator)
    url = f"/admin/tenants/user/{world.member_a.pk}/change/"
    data = _admin_form_data(browser, url)
    data["role"] = "admin"
    response = browser.post(url, data)
    assert response.status_code == 302, response.content[:3000]
    event = _one("member.role_changed", world.member_a.pk)
    _in(event, world.org_a)
    _by(event, "operator", f"operator:{operator.email}", operator.pk)
    _from(event, response)
    assert event.changes == {"before": {"role": "member"}, "after": {"role": "admin"}}
    _none("member.updated_by_operator")


@covers("member.updated_by_operator")
def test_an_operator_deactivating_a_user_is_recorded_with_the_sign_out(world, operator):
    browser = _browser(operator)
    url = f"/admin/tenants/user/{world.member_a.pk}/change/"
    data = _admin_form_data(browser, url)
    data.pop("is_active")  # an unticked box
    response = browser.post(url, data)
    assert response.status_code == 302, response.content[:3000]
    world.member_a.refresh_from_db()
    assert world.member_a.is_active is False
    event = _one("member.updated_by_operator", world.member_a.pk)
    _in(event, world.org_a)
    _by(event, "operator", f"operator:{operator.email}", operator.pk)
    _from(event, response)
    assert event.changes == {"before": {"is_active": True}, "after": {"is_active": False}}
    signed_out = _one("auth.signed_out_everywhere", world.member_a.pk)
    _in(signed_out, world.org_a)
    _by(signed_out, "operator", f"operator:{operator.email}", operator.pk)
    assert signed_out.changes == {"token_families_revoked": 0, "reason": "deactivated"}


def test_an_operator_moving_a_user_to_another_organisation_is_recorded_in_both(world, operator):
    browser = _browser(operator)
    url = f"/admin/tenants/user/{world.member_a.pk}/change/"
    data = _admin_form_data(browser, url)
    data["organisation"] = str(world.org_b.pk)
    response = browser.post(url, data)
    assert response.status_code == 302, response.content[:3000]
    events = AuditEvent.objects.filter(action="member.updated_by_operator", target_id=str(world.member_a.pk))
    assert sorted(str(e.organisation_id) for e in events) == sorted(
        [str(world.org_a.pk), str(world.org_b.pk)]
    )
    for event in events:
        _by(event, "operator", f"operator:{operator.email}", operator.pk)
        _from(event, response)
        assert event.changes == {
            "before": {"organisation": str(world.org_a.pk)},
            "after": {"organisation": str(world.org_b.pk)},
        }


def test_operators_revoking_a_key_and_signing_a_user_out_are_recorded_as_the_operator(world, operator):
    key, _secret = key_services.api_key_create(
        org=world.org_a, created_by=world.admin_a, name="leaked", scopes=["jobs:read"]
    )
    browser = _browser(operator)
    revoked = browser.post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    assert revoked.status_code == 302
    event = _one("api_key.revoked", key.pk)
    _in(event, world.org_a)
    _by(event, "operator", f"operator:{operator.email}", operator.pk)
    _from(event, revoked)

    signed_out = browser.post(
        "/admin/tenants/user/",
        {"action": "sign_out_everywhere", "_selected_action": [str(world.member_b.pk)]},
    )
    assert signed_out.status_code == 302
    event = _one("auth.signed_out_everywhere", world.member_b.pk)
    _in(event, world.org_b)
    _by(event, "operator", f"operator:{operator.email}", operator.pk)
    _from(event, signed_out)


# --- Invitations ----------------------------------------------------------------------------------


@covers("invitation.created", "invitation.resent", "invitation.revoked")
def test_an_invitation_created_resent_and_revoked_is_recorded(world, broker):
    client = _api(world.admin_a)
    created = _ok(
        client.post(
            "/api/v1/invitations", {"email": "Guest@Elsewhere.example", "role": "member"}, format="json"
        ),
        201,
    )
    invitation_id = created.json()["data"]["id"]
    event = _one("invitation.created", invitation_id)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, created)
    assert (event.target_type, event.target_label) == ("invitation", "guest@elsewhere.example")
    assert event.changes == {"before": {}, "after": {"email": "guest@elsewhere.example", "role": "member"}}

    resent = _ok(client.post(f"/api/v1/invitations/{invitation_id}/resend"))
    event = _one("invitation.resent", invitation_id)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, resent)
    assert set(event.changes) == {"expires_at"}

    revoked = _ok(client.delete(f"/api/v1/invitations/{invitation_id}"), 204)
    event = _one("invitation.revoked", invitation_id)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, revoked)
    # The link's nonce (part of its signature) is never recorded.
    nonce = Invitation.objects.get(pk=invitation_id).nonce
    _nowhere(nonce, AuditEvent.objects.filter(target_id=invitation_id))


@covers("invitation.accepted", "member.joined", "auth.signed_in")
def test_accepting_an_invitation_with_a_password_is_recorded(world, broker):
    created = _ok(
        _api(world.admin_a).post(
            "/api/v1/invitations", {"email": "joiner@elsewhere.example", "role": "admin"}, format="json"
        ),
        201,
    )
    invitation = Invitation.objects.get(pk=created.json()["data"]["id"])
    browser = _browser()
    response = browser.post(
        f"/invitations/{invitation_token(invitation)}",
        {"action": "password", "password": PASSWORD, "password_again": PASSWORD, "name": "Joiner"},
    )
    assert response.status_code == 302, response.content[:3000]
    joiner = User.objects.get(email="joiner@elsewhere.example")
    assert (joiner.organisation_id, joiner.role) == (world.org_a.pk, "admin")

    accepted = _one("invitation.accepted", invitation.pk)
    _in(accepted, world.org_a)
    _by(accepted, "user", "user:joiner@elsewhere.example", joiner.pk)
    _from(accepted, response)
    assert accepted.changes == {"role": "admin"}

    joined = _one("member.joined", joiner.pk)
    _in(joined, world.org_a)
    _by(joined, "user", "user:joiner@elsewhere.example", joiner.pk)
    _from(joined, response)
    assert joined.changes == {"role": "admin", "by": "invitation", "invitation_id": str(invitation.pk)}

    signed_in = _one("auth.signed_in", joiner.pk)
    _in(signed_in, world.org_a)
    _by(signed_in, "user", "user:joiner@elsewhere.example", joiner.pk)
    _from(signed_in, response)
    _nowhere(PASSWORD, AuditEvent.objects.all())


# --- API keys -------------------------------------------------------------------------------------


@covers("api_key.created", "api_key.revoked")
def test_an_api_key_created_and_revoked_is_recorded_without_its_secret(world):
    client = _api(world.admin_a)
    created = _ok(
        client.post("/api/v1/api-keys", {"name": "CI", "scopes": ["jobs:write", "jobs:read"]}, format="json"),
        201,
    )
    data = created.json()["data"]
    event = _one("api_key.created", data["id"])
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, created)
    assert (event.target_type, event.target_label) == ("api_key", f"CI ({data['prefix']})")
    assert event.changes == {
        "before": {},
        "after": {"name": "CI", "scopes": ["jobs:read", "jobs:write"], "expires_at": None},
    }
    secret = data["key"]
    _nowhere(secret, [event])
    _nowhere(secret.partition(".")[2], [event])

    revoked = _ok(client.delete(f"/api/v1/api-keys/{data['id']}"), 204)
    event = _one("api_key.revoked", data["id"])
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, revoked)
    assert event.changes == {"reason": "revoked"}
    # Revoking again changes nothing and records nothing.
    _ok(client.delete(f"/api/v1/api-keys/{data['id']}"), 204)
    _one("api_key.revoked", data["id"])


def test_a_replayed_creation_is_recorded_once(world):
    client = _api(world.admin_a)
    body = {"name": "Retried", "scopes": ["jobs:read"]}
    first = _ok(client.post("/api/v1/api-keys", body, format="json", HTTP_IDEMPOTENCY_KEY="create-1"), 201)
    again = _ok(client.post("/api/v1/api-keys", body, format="json", HTTP_IDEMPOTENCY_KEY="create-1"), 201)
    assert again["Idempotent-Replayed"] == "true"
    event = _one("api_key.created", first.json()["data"]["id"])
    _from(event, first)


def test_a_page_action_is_recorded_as_the_signed_in_person(world):
    browser = _browser(world.admin_a)
    response = browser.post("/api-keys/create", {"name": "From the page", "scopes": ["jobs:read"]})
    assert response.status_code == 302
    event = _one("api_key.created", target_label__startswith="From the page")
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, response)


# --- Webhooks (driven by an API key: the key is the actor) -------------------------------------------

TOKEN = "tok-in-the-query-8c1f"  # nosec B105


@covers("webhook.created", "webhook.updated", "webhook.secret_rotated", "webhook.deleted")
def test_webhook_changes_by_a_key_are_recorded_without_secrets_or_query(world):
    client = _key_client(world, "deployer", ["webhooks:read", "webhooks:write"])
    url = f"http://127.0.0.1:9/hook?token={TOKEN}"
    created = _ok(
        client.post(
            "/api/v1/webhooks",
            {"url": url, "event_types": ["job.completed"], "description": "CRM"},
            format="json",
        ),
        201,
    )
    data = created.json()["data"]
    endpoint_id = data["id"]
    event = _one("webhook.created", endpoint_id)
    _in(event, world.org_a)
    _by(event, "key", "key:deployer", client.key.pk)
    _from(event, created)
    assert (event.target_type, event.target_label) == ("webhook", "http://127.0.0.1:9/hook")
    assert event.changes == {
        "before": {},
        "after": {
            "url": "http://127.0.0.1:9/hook",
            "event_types": ["job.completed"],
            "description": "CRM",
            "active": True,
        },
    }

    updated = _ok(
        client.patch(
            f"/api/v1/webhooks/{endpoint_id}", {"description": "CRM sync", "active": True}, format="json"
        )
    )
    event = _one("webhook.updated", endpoint_id)
    _by(event, "key", "key:deployer")
    _from(event, updated)
    # Only what changed.
    assert event.changes == {"before": {"description": "CRM"}, "after": {"description": "CRM sync"}}

    rotated = _ok(client.post(f"/api/v1/webhooks/{endpoint_id}/rotate-secret"))
    event = _one("webhook.secret_rotated", endpoint_id)
    _by(event, "key", "key:deployer")
    _from(event, rotated)
    assert set(event.changes) == {"previous_secret_valid_until"}

    deleted = _ok(client.delete(f"/api/v1/webhooks/{endpoint_id}"), 204)
    event = _one("webhook.deleted", endpoint_id)
    _in(event, world.org_a)
    _by(event, "key", "key:deployer")
    _from(event, deleted)
    assert event.changes["before"]["url"] == "http://127.0.0.1:9/hook"
    assert event.changes["after"] == {}

    everything = AuditEvent.objects.filter(target_id=endpoint_id)
    assert everything.count() == 4
    _nowhere(TOKEN, everything)
    _nowhere("secret", everything.exclude(action="webhook.secret_rotated"))
    _nowhere(data["secret"], everything)
    _nowhere(rotated.json()["data"]["secret"], everything)


def test_a_webhook_urls_new_query_is_recorded_as_changed_without_its_value(world):
    client = _api(world.admin_a)
    endpoint_id = _ok(
        client.post(
            "/api/v1/webhooks",
            {"url": "http://127.0.0.1:9/hook?token=first-token-1", "event_types": ["job.completed"]},
            format="json",
        ),
        201,
    ).json()["data"]["id"]
    response = _ok(
        client.patch(
            f"/api/v1/webhooks/{endpoint_id}",
            {"url": f"http://127.0.0.1:9/hook?token={TOKEN}"},
            format="json",
        )
    )
    event = _one("webhook.updated", endpoint_id)
    _from(event, response)
    assert event.changes == {"before": {}, "after": {}, "unshown_changes": ["url"]}
    # Nothing changed at all: nothing recorded.
    _ok(
        client.patch(
            f"/api/v1/webhooks/{endpoint_id}",
            {"url": f"http://127.0.0.1:9/hook?token={TOKEN}"},
            format="json",
        )
    )
    _one("webhook.updated", endpoint_id)
    # A new path shows as it is, without its query.
    _ok(
        client.patch(
            f"/api/v1/webhooks/{endpoint_id}",
            {"url": f"http://127.0.0.1:9/other?token={TOKEN}"},
            format="json",
        )
    )
    latest = AuditEvent.objects.filter(action="webhook.updated", target_id=endpoint_id).first()
    assert latest.changes == {
        "before": {"url": "http://127.0.0.1:9/hook"},
        "after": {"url": "http://127.0.0.1:9/other"},
    }
    everything = AuditEvent.objects.filter(target_id=endpoint_id)
    _nowhere("first-token-1", everything)
    _nowhere(TOKEN, everything)


# --- ETL sources ---------------------------------------------------------------------------------

ETL_KEY = "etl-source-key-5b2d"  # nosec B105


@covers("etl_source.created", "etl_source.updated", "etl_source.deleted")
def test_source_changes_are_recorded_with_the_key_only_as_set(world):
    client = _api(world.admin_a)
    body = {
        "name": "Items",
        "kind": "api",
        "config": {"url": f"http://127.0.0.1:9/items?apikey={TOKEN}"},
        "field_mapping": MOCK_API_MAPPING,
        "api_key": ETL_KEY,
    }
    created = _ok(client.post("/api/v1/etl/sources", body, format="json"), 201)
    source_id = created.json()["data"]["id"]
    event = _one("etl_source.created", source_id)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, created)
    assert (event.target_type, event.target_label) == ("etl_source", "Items")
    after = event.changes["after"]
    assert after["api_key"] == "set"
    assert after["config"] == {"url": "http://127.0.0.1:9/items"}
    assert (after["name"], after["kind"], after["enabled"], after["schedule_minutes"]) == (
        "Items",
        "api",
        True,
        60,
    )

    updated = _ok(
        client.patch(
            f"/api/v1/etl/sources/{source_id}", {"name": "Items v2", "schedule_minutes": 60}, format="json"
        )
    )
    event = _one("etl_source.updated", source_id)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, updated)
    assert event.changes == {"before": {"name": "Items"}, "after": {"name": "Items v2"}}

    deleted = _ok(client.delete(f"/api/v1/etl/sources/{source_id}"), 204)
    event = _one("etl_source.deleted", source_id)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, deleted)
    assert event.changes["before"]["api_key"] == "set"
    assert event.changes["before"]["name"] == "Items v2"

    everything = AuditEvent.objects.filter(target_id=source_id)
    _nowhere(ETL_KEY, everything)
    _nowhere(TOKEN, everything)


def test_a_new_source_key_or_url_query_is_recorded_as_changed_without_its_value(world):
    client = _api(world.admin_a)
    body = {
        "name": "Items",
        "kind": "api",
        "config": {"url": "http://127.0.0.1:9/items"},
        "field_mapping": MOCK_API_MAPPING,
        "api_key": ETL_KEY,
    }
    source_id = _ok(client.post("/api/v1/etl/sources", body, format="json"), 201).json()["data"]["id"]
    replaced = _ok(
        client.patch(f"/api/v1/etl/sources/{source_id}", {"api_key": "replacement-key-77"}, format="json")
    )
    event = _one("etl_source.updated", source_id)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, replaced)
    assert event.changes == {"before": {}, "after": {}, "unshown_changes": ["api_key"]}

    url = f"http://127.0.0.1:9/items?apikey={TOKEN}"
    _ok(client.patch(f"/api/v1/etl/sources/{source_id}", {"config": {"url": url}}, format="json"))
    (latest,) = AuditEvent.objects.filter(action="etl_source.updated", target_id=source_id).exclude(
        pk=event.pk
    )
    assert latest.changes == {"before": {}, "after": {}, "unshown_changes": ["config.url"]}

    # A change that shows is recorded as it shows, with nothing unshown named.
    _ok(client.patch(f"/api/v1/etl/sources/{source_id}", {"api_key": ""}, format="json"))
    cleared = AuditEvent.objects.filter(action="etl_source.updated", target_id=source_id).first()
    assert cleared.changes == {"before": {"api_key": "set"}, "after": {"api_key": "none"}}
    everything = AuditEvent.objects.filter(target_id=source_id)
    for secret in (ETL_KEY, "replacement-key-77", TOKEN):
        _nowhere(secret, everything)


def test_a_file_upload_is_recorded_as_an_update_of_the_source(world, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    client = _api(world.admin_a)
    created = _ok(
        client.post(
            "/api/v1/etl/sources",
            {"name": "Uploads", "kind": "csv", "config": {}, "field_mapping": ARTICLES_CSV_MAPPING},
            format="json",
        ),
        201,
    )
    source_id = created.json()["data"]["id"]
    content = (SAMPLE_DIR / "articles.csv").read_bytes()
    uploaded = _ok(
        client.post(
            f"/api/v1/etl/sources/{source_id}/file",
            {"file": ContentFile(content, name="articles.csv")},
            format="multipart",
        )
    )
    event = _one("etl_source.updated", source_id)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, uploaded)
    assert event.changes["before"] == {"file": None}
    assert event.changes["after"] == {"file": "articles.csv"}
    assert event.changes["file_size"] == len(content)
    assert len(event.changes["file_sha256"]) == 64


# --- Billing -------------------------------------------------------------------------------------


@pytest.fixture
def stripe_stub(settings):
    with StripeStub() as stub:
        settings.STRIPE_SECRET_KEY = "sk_test_stand_in"
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = stub.url
        yield stub


def _stripe_sends(payload: dict):
    body, header = signed(payload)
    return Client(HTTP_USER_AGENT=UA).post(
        "/stripe/webhook", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


@covers("billing.checkout_started", "billing.refunded")
def test_a_checkout_and_stripes_refund_are_recorded(world, stripe_stub):
    pack = CreditPack.objects.get(credits=500)
    started = _ok(
        _api(world.admin_a).post("/api/v1/billing/checkout", {"pack": str(pack.pk)}, format="json"), 201
    )
    purchase_id = started.json()["data"]["id"]
    event = _one("billing.checkout_started", purchase_id)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, started)
    assert (event.target_type, event.target_label) == ("purchase", pack.name)
    assert event.changes == {"credits": 500, "amount_cents": 4500, "currency": "usd"}

    session_id = next(iter(stripe_stub.sessions))
    assert (
        _ok(_stripe_sends(stripe_event("checkout.session.completed", stripe_stub.pay(session_id)))).json()[
            "outcome"
        ]
        == "fulfilled"
    )
    _none("billing.refunded", target_id=purchase_id)
    refund = _stripe_sends(
        stripe_event("charge.refunded", stripe_stub.charge(session_id, refunded_cents=4500))
    )
    assert _ok(refund).json()["outcome"] == "refunded"
    recorded = _one("billing.refunded", purchase_id)
    _in(recorded, world.org_a)
    _by(recorded, "system", "stripe")
    _from(recorded, refund)
    assert recorded.changes == {
        "amount_refunded_cents": 4500,
        "fully_refunded": True,
        "credits_reversed": 500,
        "refund_shortfall": 0,
    }
    # Stripe telling of the same refund again records nothing more.
    _ok(_stripe_sends(stripe_event("charge.refunded", stripe_stub.charge(session_id, refunded_cents=4500))))
    _one("billing.refunded", purchase_id)


@covers("credits.granted")
def test_credits_granted_by_the_command_name_the_operator(world):
    out = io.StringIO()
    call_command(
        "grant_credits", org="org-a", amount=25, reason="goodwill", operator="ops@nexus.test", stdout=out
    )
    event = _one("credits.granted", organisation_id=world.org_a.pk)
    _by(event, "operator", "operator:ops@nexus.test")
    assert (event.target_type, event.target_label) == ("credits", "25 credits")
    assert event.changes == {"amount": 25, "reason": "goodwill", "balance_after": 25}
    assert event.ip is None  # no request


def test_credits_granted_in_the_admin_name_the_operator(world, operator):
    browser = _browser(operator)
    response = browser.post(
        "/admin/tenants/organisation/",
        {
            "action": "grant_credits",
            "_selected_action": [str(world.org_b.pk)],
            "apply": "1",
            "amount": "40",
            "reason": "support ticket 12",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    event = _one("credits.granted", organisation_id=world.org_b.pk)
    _by(event, "operator", f"operator:{operator.email}", operator.pk)
    _from(event, response)
    assert event.changes == {"amount": 40, "reason": "support ticket 12", "balance_after": 40}
    _none("credits.granted", organisation_id=world.org_a.pk)


# --- Audits -------------------------------------------------------------------------------------


@pytest.fixture
def local_evaluator(settings):
    settings.AUDIT_PROVIDER_RPM = 100_000
    settings.AUDIT_PROVIDER_TPM = 100_000_000
    settings.GEMINI_API_KEY = ""


@covers("audit.started", "audit.cancelled")
def test_an_audit_started_by_a_key_and_cancelled_by_an_admin_is_recorded(funded, broker, local_evaluator):
    world = funded
    key_client = _key_client(world, "auditor", ["audits:read", "audits:write"])
    data = b'"id","text"\n"1","Great party"\n"2","Lovely coffee"\n'
    started = key_client.post(
        "/api/v1/audits",
        {"file": SimpleUploadedFile("posts.csv", data), "criteria": "Anything a recruiter would frown at"},
        format="multipart",
    )
    assert started.status_code == 202, started.content
    audit_id = started.json()["data"]["id"]
    event = _one("audit.started", audit_id)
    _in(event, world.org_a)
    _by(event, "key", "key:auditor", key_client.key.pk)
    _from(event, started)
    assert (event.target_type, event.target_label) == ("audit", "posts.csv")
    assert event.changes == {"items": 2, "credits_reserved": 2, "input_kind": "csv"}

    cancelled = _ok(_api(world.admin_a).post(f"/api/v1/audits/{audit_id}/cancel"))
    event = _one("audit.cancelled", audit_id)
    _in(event, world.org_a)
    _by(event, "user", "user:admin@org-a.test", world.admin_a.pk)
    _from(event, cancelled)
    assert event.changes == {"items_cancelled": 2}


# --- Signing in and out -----------------------------------------------------------------------------


@pytest.fixture
def with_password(world) -> User:
    return user_create(email="pat@org-a.test", organisation=world.org_a, role=Role.MEMBER, password=PASSWORD)


def _password_sign_in(browser: Client, email: str, password: str):
    return browser.post("/accounts/login/", {"login": email, "password": password})


def test_a_password_sign_in_is_recorded(world, with_password):
    browser = _browser()
    response = _password_sign_in(browser, "pat@org-a.test", PASSWORD)
    assert response.status_code == 302, response.content[:3000]
    event = _one("auth.signed_in", with_password.pk)
    _in(event, world.org_a)
    _by(event, "user", "user:pat@org-a.test", with_password.pk)
    _from(event, response)
    assert (event.target_type, event.target_label) == ("user", "pat@org-a.test")
    assert event.changes == {"method": "password"}
    with_password.refresh_from_db()
    assert with_password.last_login_ip == IP
    _nowhere(PASSWORD, [event])


@covers("auth.sign_in_failed")
def test_a_wrong_password_is_recorded_in_the_users_organisation(world, with_password):
    response = _password_sign_in(_browser(), "pat@org-a.test", "not-the-password-7")
    assert response.status_code == 200
    event = _one("auth.sign_in_failed", with_password.pk)
    _in(event, world.org_a)
    _by(event, "anonymous", "anonymous")
    _from(event, response)
    assert (event.target_type, event.target_label) == ("user", "pat@org-a.test")
    assert event.changes == {"reason": "wrong_credentials", "method": "password"}
    _nowhere("not-the-password-7", AuditEvent.objects.all())
    _none("auth.signed_in", target_id=str(with_password.pk))


def test_an_unknown_address_is_recorded_in_no_organisation_without_what_was_typed(world):
    response = _password_sign_in(_browser(), "Nobody@Unknown.example", "whatever-password-1")
    assert response.status_code == 200
    # What was typed names no account (it could be a password typed in the wrong field).
    event = _one("auth.sign_in_failed", target_label="(unknown address)")
    _nowhere("nobody@unknown.example", AuditEvent.objects.all())
    _in(event, None)
    _by(event, "anonymous", "anonymous")
    _from(event, response)
    assert event.target_id == ""
    assert event.changes == {"reason": "wrong_credentials", "method": "password"}


@covers("auth.signed_out_everywhere")
def test_signing_out_everywhere_is_recorded(world):
    response = _ok(_api(world.member_a).post("/api/v1/auth/logout-all"), 204)
    event = _one("auth.signed_out_everywhere", world.member_a.pk)
    _in(event, world.org_a)
    _by(event, "user", "user:member@org-a.test", world.member_a.pk)
    _from(event, response)
    # The sign-in of the token it called with is one.
    assert event.changes == {"token_families_revoked": 1, "reason": "sign_out_everywhere"}


def _token_sign_in(user: User) -> APIClient:
    """A browser session exchanged for tokens: the client holds the refresh cookie."""
    client = APIClient(HTTP_USER_AGENT=UA, enforce_csrf_checks=True)
    client.force_login(User.objects.get(pk=user.pk))
    client.get("/")
    _ok(client.post("/api/v1/auth/token", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value))
    return client


@covers("auth.token_family_revoked")
def test_logging_out_revokes_the_family_and_is_recorded(world):
    client = _token_sign_in(world.member_a)
    family = RefreshToken(client.cookies[COOKIE].value)["fam"]
    logout = APIClient(HTTP_USER_AGENT=UA)
    logout.cookies[COOKIE] = client.cookies[COOKIE].value
    response = _ok(logout.post("/api/v1/auth/logout"), 204)
    event = _one("auth.token_family_revoked", family)
    _in(event, world.org_a)
    _by(event, "user", "user:member@org-a.test", world.member_a.pk)
    _from(event, response)
    assert (event.target_type, event.target_label) == ("token_family", "member@org-a.test")
    assert event.changes == {"reason": "logout"}
    # Logging out twice is no error, and no second event.
    _ok(logout.post("/api/v1/auth/logout"), 204)
    _one("auth.token_family_revoked", family)
    _nowhere(client.cookies[COOKIE].value, AuditEvent.objects.all())


def test_a_replayed_refresh_token_revokes_the_family_and_is_recorded(world):
    client = _token_sign_in(world.member_a)
    first = client.cookies[COOKIE].value
    family = RefreshToken(first)["fam"]
    _ok(client.post("/api/v1/auth/refresh"))
    assert client.cookies[COOKIE].value != first
    replay = APIClient(HTTP_USER_AGENT=UA)
    replay.cookies[COOKIE] = first
    response = replay.post("/api/v1/auth/refresh")
    assert response.status_code == 401
    event = _one("auth.token_family_revoked", family)
    _in(event, world.org_a)
    _by(event, "user", "user:member@org-a.test", world.member_a.pk)
    _from(event, response)
    assert event.changes == {"reason": "reuse"}
    _nowhere(first, AuditEvent.objects.all())


# --- Where a request came from ---------------------------------------------------------------------


def test_behind_a_trusted_proxy_the_address_it_saw_is_recorded(world, settings):
    settings.RATE_LIMIT_TRUSTED_PROXIES = 1
    client = _api(world.admin_a)
    _ok(
        client.patch(
            "/api/v1/org",
            {"domain_auto_join": False},
            format="json",
            HTTP_X_FORWARDED_FOR="192.0.2.66, 198.51.100.7",
        )
    )
    assert _one("organisation.updated", world.org_a.pk).ip == "198.51.100.7"


def test_a_forwarded_address_is_ignored_without_a_trusted_proxy(world, settings):
    settings.RATE_LIMIT_TRUSTED_PROXIES = 0
    _ok(
        _api(world.admin_a).patch(
            "/api/v1/org", {"domain_auto_join": False}, format="json", HTTP_X_FORWARDED_FOR="192.0.2.66"
        )
    )
    assert _one("organisation.updated", world.org_a.pk).ip == IP


def test_a_long_user_agent_and_a_callers_request_id_are_recorded(world):
    client = APIClient(HTTP_USER_AGENT="A" * 600)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_for(world.admin_a)}")
    response = _ok(
        client.patch(
            "/api/v1/org", {"domain_auto_join": False}, format="json", HTTP_X_REQUEST_ID="trace-42.a"
        )
    )
    assert response["X-Request-ID"] == "trace-42.a"
    event = _one("organisation.updated", world.org_a.pk)
    assert event.user_agent == "A" * 255
    assert event.request_id == "trace-42.a"


# --- The record shares the change's transaction ----------------------------------------------------


def test_a_refused_change_records_nothing(world):
    response = _api(world.admin_a).patch(
        f"/api/v1/org/members/{world.admin_a.pk}", {"role": "member"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["details"]["reason"] == "last_admin"
    _none("member.role_changed")
    response = _api(world.admin_a).delete(f"/api/v1/org/members/{world.admin_a.pk}")
    assert response.status_code == 409
    _none("member.removed")


def test_a_change_rolled_back_takes_its_event_with_it(world):
    with pytest.raises(RuntimeError), transaction.atomic():
        member_change_role(org=world.org_a, member_id=world.member_a.pk, role=Role.ADMIN)
        assert AuditEvent.objects.filter(action="member.role_changed").count() == 1
        raise RuntimeError("the caller's transaction fails after the change")
    _none("member.role_changed")
    world.member_a.refresh_from_db()
    assert world.member_a.role == Role.MEMBER


def test_an_event_is_visible_to_the_organisations_admin(world):
    """The end of the chain: what was recorded is what the admin reads."""
    _ok(_api(world.admin_a).patch("/api/v1/org", {"domain_auto_join": False}, format="json"))
    (listed,) = (
        _api(world.admin_a).get("/api/v1/audit-log", {"action": "organisation.updated"}).json()["data"]
    )
    assert listed["actor"] == "user:admin@org-a.test"
    assert listed["changes"] == {"before": {"domain_auto_join": True}, "after": {"domain_auto_join": False}}
    assert listed["ip"] == IP


# Last in the module: the tests above drive every action of the catalogue.
def test_every_action_in_the_catalogue_is_driven_above():
    assert set(ACTIONS) == COVERED
