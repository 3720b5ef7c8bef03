"""Invitations (docs/specs/team-access.md): the API and pages that send them, the real email
through Django's SMTP backend to a local aiosmtpd server, the signed single-use link, joining
by password or by Google sign-in, leaving one organisation for another, the organisation's
domain_auto_join setting, and a send that keeps failing."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from celery.exceptions import Retry
from django.core import signing
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from auditlog.models import AuditEvent
from tenants.models import Invitation, Organisation, Role, User
from tenants.services import invitations
from tenants.services.keys import api_key_create
from tenants.tasks import INVITATION_RETRY_DELAYS, send_invitation

pytestmark = pytest.mark.django_db

SEND_TASK = "tenants.send_invitation"
STRONG_PASSWORD = "Tangerine-Lighthouse-47!"


# --- A real SMTP server ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """What the local SMTP server received: one (mail_from, rcpt_tos, content) per message."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _use_smtp(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.PUBLIC_BASE_URL = "http://testserver"


@pytest.fixture
def smtp(settings):
    """A local aiosmtpd server that Django's SMTP backend sends to; its Inbox."""
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    _use_smtp(settings, port)
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_down(settings):
    """Django's SMTP backend pointed at a port nothing listens on."""
    _use_smtp(settings, _free_port())


class RefusingInbox:
    """An SMTP server that takes each message's data and then refuses it, counting tries."""

    def __init__(self) -> None:
        self.attempts = 0

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        return "451 4.3.0 Try again later"


@pytest.fixture
def smtp_refusing(settings):
    inbox = RefusingInbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    _use_smtp(settings, port)
    try:
        yield inbox
    finally:
        controller.stop()


# --- Helpers --------------------------------------------------------------------------------


def _invite(org, inviter, email, role=Role.MEMBER) -> Invitation:
    return invitations.invitation_create(org=org, invited_by=inviter, email=email, role=role)


def _link(invitation: Invitation) -> str:
    invitation.refresh_from_db()
    return f"/invitations/{invitations.invitation_token(invitation)}"


def _names(path: str, invitation: Invitation) -> bool:
    """Whether `path` is a usable link of `invitation` (a token carries its signing time, so
    two links of one invitation differ by the second they were made)."""
    assert path.startswith("/invitations/")
    found = invitations.invitation_from_token(path.removeprefix("/invitations/"))
    return isinstance(found, Invitation) and found.pk == invitation.pk


def _error(response) -> dict:
    return response.json()["error"]


def _events(org, action, **filters):
    return AuditEvent.objects.filter(organisation_id=org.pk, action=action, **filters)


def _invitation_row(page: str, email: str) -> str:
    match = re.search(rf'<tr data-invitation="{re.escape(email)}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {email} in the invitations table"
    return match.group(1)


# --- 1. The real email, the link, and joining with a password ------------------------------


def test_invitation_email_is_sent_by_smtp_and_its_link_creates_the_account_in_the_organisation(
    world, api_as, broker, smtp, client, settings, django_capture_on_commit_callbacks
):
    queued = broker.watch(SEND_TASK, lambda message: message.args)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(world.admin_a).post(
            "/api/v1/invitations", {"email": "New.Person@Example.com", "role": "admin"}, format="json"
        )
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["email"] == "new.person@example.com"
    assert data["role"] == "admin"
    assert data["status"] == "pending"
    invitation = Invitation.objects.get(pk=data["id"])
    assert queued == [[str(invitation.pk), invitation.nonce]]

    result = send_invitation.apply(args=queued[0])
    assert result.successful()

    assert len(smtp.received) == 1
    mail_from, rcpt_tos, content = smtp.received[0]
    assert rcpt_tos == ["new.person@example.com"]
    assert mail_from == parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert parseaddr(str(message["To"]))[1] == "new.person@example.com"
    assert parseaddr(str(message["From"])) == parseaddr(settings.DEFAULT_FROM_EMAIL)
    assert "Org A" in str(message["Subject"])
    assert message.is_multipart()
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    url = re.search(r"http://testserver/invitations/[\w.:-]+", text).group(0)
    assert f'href="{url}"' in html
    assert "admin" in text
    assert "Org A" in html
    invitation.refresh_from_db()
    assert invitation.sent_count == 1
    assert invitation.last_sent_at is not None
    assert invitation.last_send_error == ""

    # The invitee follows the link from the email.
    link = urlsplit(url).path
    assert _names(link, invitation)
    page = client.get(link)
    assert page.status_code == 200
    assert "Join Org A" in page.content.decode()
    assert "as admin" in page.content.decode()
    assert "data-invitation-password" in page.content.decode()

    joined = client.post(
        link,
        {
            "action": "password",
            "name": "New Person",
            "password": STRONG_PASSWORD,
            "password_again": STRONG_PASSWORD,
        },
    )
    assert joined.status_code == 302
    assert joined["Location"] == "/"
    user = User.objects.get(email="new.person@example.com")
    assert user.organisation_id == world.org_a.pk
    assert user.role == Role.ADMIN
    assert user.name == "New Person"
    assert user.check_password(STRONG_PASSWORD)
    assert client.get("/").status_code == 200
    invitation.refresh_from_db()
    assert invitation.status == "accepted"
    assert invitation.accepted_by_id == user.pk

    again = client.get(link)
    assert again.status_code == 410
    assert "already used" in again.content.decode()

    created = _events(world.org_a, "invitation.created", target_id=str(invitation.pk))
    accepted = _events(world.org_a, "invitation.accepted", target_id=str(invitation.pk))
    member_joined = _events(world.org_a, "member.joined", target_id=str(user.pk))
    assert [e.actor_label for e in created] == ["user:admin@org-a.test"]
    assert [e.actor_label for e in accepted] == ["user:new.person@example.com"]
    assert [e.actor_label for e in member_joined] == ["user:new.person@example.com"]
    assert created[0].changes == {"before": {}, "after": {"email": "new.person@example.com", "role": "admin"}}
    assert member_joined[0].changes["by"] == "invitation"


def test_a_weak_or_mismatched_password_creates_no_account(world, client):
    invitation = _invite(world.org_a, world.admin_a, "weak@example.com")
    link = _link(invitation)
    weak = client.post(link, {"action": "password", "name": "", "password": "123", "password_again": "123"})
    assert weak.status_code == 422
    assert "too short" in weak.content.decode()
    differ = client.post(
        link,
        {"action": "password", "password": STRONG_PASSWORD, "password_again": STRONG_PASSWORD + "x"},
    )
    assert differ.status_code == 422
    assert "differ" in differ.content.decode()
    assert not User.objects.filter(email="weak@example.com").exists()
    invitation.refresh_from_db()
    assert invitation.status == "pending"


# --- 2. Validation and conflicts --------------------------------------------------------------


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"email": "not-an-address", "role": "member"}, "email"),
        ({"email": "someone@example.com", "role": "owner"}, "role"),
    ],
)
def test_a_bad_address_or_role_is_refused(world, api_as, payload, field):
    response = api_as(world.admin_a).post("/api/v1/invitations", payload, format="json")
    assert response.status_code == 422
    assert _error(response)["code"] == "VALIDATION_ERROR"
    assert list(_error(response)["details"]["fields"]) == [field]
    assert not Invitation.objects.filter(organisation=world.org_a).exists()


def test_inviting_a_current_member_is_a_conflict(world, api_as):
    response = api_as(world.admin_a).post(
        "/api/v1/invitations", {"email": "Member@Org-A.test", "role": "admin"}, format="json"
    )
    assert response.status_code == 409
    assert _error(response)["code"] == "CONFLICT"
    assert _error(response)["details"]["reason"] == "already_member"


def test_inviting_the_same_address_twice_is_a_conflict(world, api_as):
    client = api_as(world.admin_a)
    first = client.post("/api/v1/invitations", {"email": "twice@example.com"}, format="json")
    assert first.status_code == 201
    second = client.post("/api/v1/invitations", {"email": "TWICE@example.com"}, format="json")
    assert second.status_code == 409
    assert _error(second)["details"]["reason"] == "already_invited"
    assert Invitation.objects.filter(organisation=world.org_a, email="twice@example.com").count() == 1


def test_the_same_address_may_be_invited_by_two_organisations(world, api_as):
    for admin in (world.admin_a, world.admin_b):
        response = api_as(admin).post("/api/v1/invitations", {"email": "both@example.com"}, format="json")
        assert response.status_code == 201


def test_a_free_mail_address_can_be_invited(world, api_as):
    response = api_as(world.admin_a).post(
        "/api/v1/invitations", {"email": "friend@gmail.com", "role": "member"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["data"]["email"] == "friend@gmail.com"


def test_pending_invitations_are_capped(world, api_as, settings):
    settings.ORG_MAX_PENDING_INVITATIONS = 2

    def invite(admin, email):
        return api_as(admin).post("/api/v1/invitations", {"email": email}, format="json")

    first = invite(world.admin_a, "p0@example.com")
    assert first.status_code == 201
    assert invite(world.admin_a, "p1@example.com").status_code == 201
    over = invite(world.admin_a, "p2@example.com")
    assert over.status_code == 409
    assert _error(over)["code"] == "LIMIT_REACHED"
    assert _error(over)["details"]["cap"] == 2
    # Another organisation's invitations do not count against this one's.
    assert invite(world.admin_b, "p2@example.com").status_code == 201
    # Withdrawing one makes room again.
    assert (
        api_as(world.admin_a).delete(f"/api/v1/invitations/{first.json()['data']['id']}").status_code == 204
    )
    assert invite(world.admin_a, "p2@example.com").status_code == 201


def test_a_member_cannot_invite_or_list_invitations(world, api_as):
    client = api_as(world.member_a)
    response = client.post("/api/v1/invitations", {"email": "x@example.com"}, format="json")
    assert response.status_code == 403
    assert client.get("/api/v1/invitations").status_code == 403
    assert not Invitation.objects.filter(email="x@example.com").exists()


def test_an_api_key_cannot_invite(world):
    _key, secret = api_key_create(
        org=world.org_a, created_by=world.admin_a, name="ci", scopes=["jobs:read", "jobs:write"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = client.post("/api/v1/invitations", {"email": "keyholder@example.com"}, format="json")
    assert response.status_code == 403
    assert not Invitation.objects.filter(email="keyholder@example.com").exists()


def test_another_organisations_invitation_is_not_found(world, api_as):
    theirs = _invite(world.org_b, world.admin_b, "theirs@example.com")
    client = api_as(world.admin_a)
    assert client.delete(f"/api/v1/invitations/{theirs.pk}").status_code == 404
    assert client.post(f"/api/v1/invitations/{theirs.pk}/resend").status_code == 404
    nonce = theirs.nonce
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert theirs.nonce == nonce


def test_the_members_page_invites_and_withdraws(world, client):
    client.force_login(world.admin_a)
    response = client.post("/members/invite", {"email": "page@example.com", "role": "member"})
    assert response.status_code == 302
    invitation = Invitation.objects.get(organisation=world.org_a, email="page@example.com")
    page = client.get("/members").content.decode()
    assert "Resend" in _invitation_row(page, "page@example.com")
    response = client.post(f"/members/invitations/{invitation.pk}/action", {"action": "revoke"})
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.status == "revoked"


def test_a_member_cannot_use_the_invitation_pages(world, client):
    client.force_login(world.member_a)
    assert client.post("/members/invite", {"email": "sneaky@example.com"}).status_code == 403
    assert not Invitation.objects.filter(email="sneaky@example.com").exists()


# --- 3. The link: resend, revoke, expiry, tampering; listing -----------------------------------


def test_resend_replaces_the_link_and_resets_the_expiry(
    world, api_as, broker, client, django_capture_on_commit_callbacks
):
    invitation = _invite(world.org_a, world.admin_a, "again@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    old_link = _link(invitation)
    queued = broker.watch(SEND_TASK, lambda message: message.args)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(world.admin_a).post(f"/api/v1/invitations/{invitation.pk}/resend")
    assert response.status_code == 200
    invitation.refresh_from_db()
    assert invitation.expires_at > timezone.now() + timedelta(days=6)
    assert queued == [[str(invitation.pk), invitation.nonce]]
    assert len(_events(world.org_a, "invitation.resent", target_id=str(invitation.pk))) == 1

    old = client.get(old_link)
    assert old.status_code == 404
    assert "replaced by a newer one" in old.content.decode()
    new = client.get(_link(invitation))
    assert new.status_code == 200
    assert "Join Org A" in new.content.decode()


def test_an_older_links_email_task_sends_nothing_after_a_resend(world, smtp, api_as):
    invitation = _invite(world.org_a, world.admin_a, "stale-task@example.com")
    stale_nonce = invitation.nonce
    api_as(world.admin_a).post(f"/api/v1/invitations/{invitation.pk}/resend")
    assert send_invitation.apply(args=[str(invitation.pk), stale_nonce]).successful()
    assert smtp.received == []
    invitation.refresh_from_db()
    assert invitation.sent_count == 0


def test_resending_an_expired_invitation_renews_it(world, api_as, client):
    invitation = _invite(world.org_a, world.admin_a, "renew@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(days=1))
    assert client.get(_link(invitation)).status_code == 410

    response = api_as(world.admin_a).post(f"/api/v1/invitations/{invitation.pk}/resend")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "pending"
    assert client.get(_link(invitation)).status_code == 200


def test_a_revoked_invitation_link_is_gone(world, api_as, client):
    invitation = _invite(world.org_a, world.admin_a, "revoked@example.com")
    link = _link(invitation)
    response = api_as(world.admin_a).delete(f"/api/v1/invitations/{invitation.pk}")
    assert response.status_code == 204
    page = client.get(link)
    assert page.status_code == 410
    assert "withdrawn" in page.content.decode()
    # Revoked: nothing left to resend or revoke.
    assert api_as(world.admin_a).post(f"/api/v1/invitations/{invitation.pk}/resend").status_code == 409
    assert api_as(world.admin_a).delete(f"/api/v1/invitations/{invitation.pk}").status_code == 409
    # Nor can it be joined through the old link.
    posted = client.post(
        link, {"action": "password", "password": STRONG_PASSWORD, "password_again": STRONG_PASSWORD}
    )
    assert posted.status_code == 410
    assert not User.objects.filter(email="revoked@example.com").exists()


def test_an_accepted_invitation_cannot_be_revoked(world, api_as, client):
    invitation = _invite(world.org_a, world.admin_a, "done@example.com")
    client.post(
        _link(invitation),
        {"action": "password", "password": STRONG_PASSWORD, "password_again": STRONG_PASSWORD},
    )
    response = api_as(world.admin_a).delete(f"/api/v1/invitations/{invitation.pk}")
    assert response.status_code == 409
    invitation.refresh_from_db()
    assert invitation.status == "accepted"


def test_an_expired_invitation_is_gone_and_the_address_can_be_invited_again(world, api_as, client):
    invitation = _invite(world.org_a, world.admin_a, "late@example.com")
    link = _link(invitation)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    page = client.get(link)
    assert page.status_code == 410
    assert "expired" in page.content.decode()

    response = api_as(world.admin_a).post(
        "/api/v1/invitations", {"email": "late@example.com", "role": "admin"}, format="json"
    )
    assert response.status_code == 201
    fresh = Invitation.objects.get(pk=response.json()["data"]["id"])
    assert fresh.pk != invitation.pk
    assert client.get(_link(fresh)).status_code == 200
    assert client.get(link).status_code == 410
    # The expired one was withdrawn to make way, and the log says why.
    replaced = _events(world.org_a, "invitation.revoked", target_id=str(invitation.pk))
    assert [e.changes["reason"] for e in replaced] == ["expired_and_replaced"]


@pytest.mark.parametrize("mangle", ["flip", "truncate", "garbage"])
def test_a_tampered_link_is_not_found(world, client, mangle):
    invitation = _invite(world.org_a, world.admin_a, "tamper@example.com")
    token = invitations.invitation_token(invitation)
    signature = token.rpartition(":")[2]
    bad = {
        # One character of the signature (its first: every bit of it counts).
        "flip": f"{token.rpartition(':')[0]}:{'B' if signature[0] == 'A' else 'A'}{signature[1:]}",
        "truncate": token[: len(token) // 2],
        "garbage": "not-a-token",
    }[mangle]
    response = client.get(f"/invitations/{bad}")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_a_link_signed_for_another_purpose_is_not_found(world, client):
    invitation = _invite(world.org_a, world.admin_a, "salt@example.com")
    forged = signing.dumps({"i": str(invitation.pk), "n": invitation.nonce}, compress=True)
    assert client.get(f"/invitations/{forged}").status_code == 404


def test_the_list_filters_by_status(world, api_as):
    pending = _invite(world.org_a, world.admin_a, "pending@example.com")
    accepted = _invite(world.org_a, world.admin_a, "accepted@example.com")
    revoked = _invite(world.org_a, world.admin_a, "revoked@example.com")
    expired = _invite(world.org_a, world.admin_a, "expired@example.com")
    Invitation.objects.filter(pk=accepted.pk).update(accepted_at=timezone.now())
    Invitation.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    _invite(world.org_b, world.admin_b, "elsewhere@example.com")
    client = api_as(world.admin_a)

    def emails(query):
        response = client.get(f"/api/v1/invitations{query}")
        assert response.status_code == 200
        return {row["email"]: row["status"] for row in response.json()["data"]}

    assert emails("?status=pending,accepted") == {
        pending.email: "pending",
        accepted.email: "accepted",
    }
    assert emails("?status=expired") == {expired.email: "expired"}
    assert emails("?status=revoked") == {revoked.email: "revoked"}

    unknown = client.get("/api/v1/invitations?status=pending,lost")
    assert unknown.status_code == 422
    assert "lost" in " ".join(_error(unknown)["details"]["fields"]["status"])


# --- 4. An address that belongs to another organisation ----------------------------------------


def _join(client, invitation):
    return client.post(_link(invitation), {"action": "join"})


def test_a_member_of_another_organisation_must_leave_it_first(world, api_as, client):
    invitation = _invite(world.org_a, world.admin_a, "member@org-b.test", role=Role.ADMIN)
    client.force_login(world.member_b)

    opened = client.get(_link(invitation))
    assert opened.status_code == 409
    text = opened.content.decode()
    assert "Your account belongs to Org B. Leave it first" in text
    assert 'value="join"' not in text
    refused = _join(client, invitation)
    assert refused.status_code == 409
    assert "Leave it first" in refused.content.decode()
    world.member_b.refresh_from_db()
    assert world.member_b.organisation_id == world.org_b.pk
    invitation.refresh_from_db()
    assert invitation.status == "pending"

    assert api_as(world.member_b).post("/api/v1/org/leave").status_code == 204
    member = User.objects.get(pk=world.member_b.pk)
    assert member.organisation_id is None
    assert member.is_active
    # Leaving ended this browser's session too.
    assert client.get("/")["Location"].startswith("/accounts/login/")

    client.force_login(member)
    joined = _join(client, invitation)
    assert joined.status_code == 302
    member.refresh_from_db()
    assert member.organisation_id == world.org_a.pk
    assert member.role == Role.ADMIN
    invitation.refresh_from_db()
    assert invitation.status == "accepted"
    assert invitation.accepted_by_id == member.pk
    assert len(_events(world.org_b, "member.left", target_id=str(member.pk))) == 1
    assert len(_events(world.org_a, "member.joined", target_id=str(member.pk))) == 1


def test_leaving_through_the_members_page_then_accepting(world, client):
    invitation = _invite(world.org_a, world.admin_a, "member@org-b.test")
    client.force_login(world.member_b)

    asked = client.post("/members/leave")
    assert asked.status_code == 200
    assert "Leave Org B" in asked.content.decode()
    world.member_b.refresh_from_db()
    assert world.member_b.organisation_id == world.org_b.pk

    left = client.post("/members/leave", {"confirmed": "leave"})
    assert left.status_code == 200
    member = User.objects.get(pk=world.member_b.pk)
    assert member.organisation_id is None

    client.force_login(member)
    assert _join(client, invitation).status_code == 302
    member.refresh_from_db()
    assert member.organisation_id == world.org_a.pk
    assert member.role == Role.MEMBER


def test_an_invitation_opened_while_signed_in_as_another_address_is_refused(world, client):
    invitation = _invite(world.org_a, world.admin_a, "someone-else@example.com")
    client.force_login(world.admin_b)

    page = client.get(_link(invitation))
    assert page.status_code == 200
    assert "data-invitation-wrong-account" in page.content.decode()
    assert "signed in as admin@org-b.test" in page.content.decode()

    refused = _join(client, invitation)
    assert refused.status_code == 409
    assert "you are signed in as admin@org-b.test" in refused.content.decode()
    # Nor can a signed-in visitor create the invited address's account with a password.
    posted = client.post(
        _link(invitation),
        {"action": "password", "password": STRONG_PASSWORD, "password_again": STRONG_PASSWORD},
    )
    assert posted.status_code == 400
    assert not User.objects.filter(email="someone-else@example.com").exists()
    world.admin_b.refresh_from_db()
    assert world.admin_b.organisation_id == world.org_b.pk
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_an_existing_account_without_an_organisation_signs_in_and_joins(world, client):
    invitation = _invite(world.org_a, world.admin_a, "member@org-b.test")
    User.objects.filter(pk=world.member_b.pk).update(organisation=None, role=Role.MEMBER)
    page = client.get(_link(invitation)).content.decode()
    # An account exists: it signs in first (no password form to create another).
    assert "Sign in with your password" in page
    assert "data-invitation-password" not in page
    refused = client.post(
        _link(invitation),
        {"action": "password", "password": STRONG_PASSWORD, "password_again": STRONG_PASSWORD},
    )
    assert refused.status_code == 400
    client.force_login(User.objects.get(pk=world.member_b.pk))
    assert _join(client, invitation).status_code == 302
    assert User.objects.get(pk=world.member_b.pk).organisation_id == world.org_a.pk


def test_the_last_admin_of_an_organisation_with_members_cannot_leave(world, api_as, client):
    response = api_as(world.admin_a).post("/api/v1/org/leave")
    assert response.status_code == 409
    assert _error(response)["details"]["reason"] == "last_admin"
    client.force_login(world.admin_a)
    page = client.post("/members/leave", {"confirmed": "leave"})
    assert page.status_code == 302
    admin = User.objects.get(pk=world.admin_a.pk)
    assert admin.organisation_id == world.org_a.pk
    assert admin.role == Role.ADMIN


# --- 5. Joining by Google sign-in ------------------------------------------------------------


def _google_start(client, invitation) -> str:
    token = invitations.invitation_token(invitation)
    response = client.post(f"/invitations/{token}/google")
    assert response.status_code == 302
    assert client.session[invitations.INVITATION_SESSION_KEY] == token
    assert urlsplit(response["Location"]).path == "/auth/login"
    return response["Location"]


@pytest.mark.parametrize(
    "email,hd",
    [("friend@gmail.com", None), ("partner@othercorp.example", "othercorp.example")],
    ids=["free-mail", "workspace-of-another-domain"],
)
def test_the_invited_address_joins_by_google_sign_in(world, google, client, email, hd):
    invitation = _invite(world.org_a, world.admin_a, email, role=Role.ADMIN)
    organisations = Organisation.objects.count()

    response = google(client, email, hd=hd, start=_google_start(client, invitation))
    # Straight to the organisation's dashboard: the link, used up now, has nothing to offer.
    assert response.status_code == 302
    assert response["Location"] == "/"
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert "Welcome to Org A." in dashboard.content.decode()
    user = User.objects.get(email=email)
    assert user.organisation_id == world.org_a.pk
    assert user.role == Role.ADMIN
    assert Organisation.objects.count() == organisations
    invitation.refresh_from_db()
    assert invitation.status == "accepted"
    assert invitation.accepted_by_id == user.pk
    assert invitations.INVITATION_SESSION_KEY not in client.session
    joined = _events(world.org_a, "member.joined", target_id=str(user.pk))
    assert [(e.actor_label, e.changes["by"]) for e in joined] == [(f"user:{email}", "invitation")]


def test_an_account_that_left_signs_in_with_google_and_joins_from_the_invitation_page(
    world, api_as, google, client
):
    assert api_as(world.member_b).post("/api/v1/org/leave").status_code == 204
    invitation = _invite(world.org_a, world.admin_a, "member@org-b.test", role=Role.ADMIN)
    organisations = Organisation.objects.count()

    response = google(client, "member@org-b.test", start=_google_start(client, invitation))
    # An existing account is not placed by the sign-in: it comes back to the invitation.
    assert response.status_code == 302
    assert _names(response["Location"], invitation)
    assert User.objects.get(pk=world.member_b.pk).organisation_id is None
    assert Organisation.objects.count() == organisations
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "Join Org A" in page.content.decode()

    assert _join(client, invitation).status_code == 302
    member = User.objects.get(pk=world.member_b.pk)
    assert member.organisation_id == world.org_a.pk
    assert member.role == Role.ADMIN


def test_a_member_of_another_organisation_signing_in_with_google_must_leave_first(world, google, client):
    invitation = _invite(world.org_a, world.admin_a, "member@org-b.test")
    response = google(client, "member@org-b.test", start=_google_start(client, invitation))
    assert _names(response["Location"], invitation)
    landing = client.get(response["Location"])
    assert landing.status_code == 409
    assert "Your account belongs to Org B. Leave it first" in landing.content.decode()
    assert _join(client, invitation).status_code == 409
    assert User.objects.get(pk=world.member_b.pk).organisation_id == world.org_b.pk


def test_an_invitee_who_joined_by_domain_meanwhile_is_told_they_are_a_member(world, google, client):
    invitation = _invite(world.org_a, world.admin_a, "newhire@org-a.test")
    google(client, "newhire@org-a.test", hd="org-a.test")
    assert User.objects.get(email="newhire@org-a.test").organisation_id == world.org_a.pk
    page = client.get(_link(invitation))
    assert page.status_code == 409
    assert "already a member of this organisation" in page.content.decode()
    assert 'value="join"' not in page.content.decode()
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_google_sign_in_as_another_address_does_not_use_the_invitation(world, google, client):
    invitation = _invite(world.org_a, world.admin_a, "invited@gmail.com")
    google(client, "impostor@gmail.com", start=_google_start(client, invitation))
    impostor = User.objects.select_related("organisation").get(email="impostor@gmail.com")
    assert impostor.organisation_id != world.org_a.pk
    assert impostor.organisation.is_personal
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_the_google_link_of_an_unusable_invitation_goes_back_to_its_page(world, client):
    invitation = _invite(world.org_a, world.admin_a, "withdrawn@gmail.com")
    invitations.invitation_revoke(org=world.org_a, invitation_id=invitation.pk)
    token = invitations.invitation_token(invitation)
    response = client.post(f"/invitations/{token}/google")
    assert response.status_code == 302
    assert response["Location"] == f"/invitations/{token}"
    assert invitations.INVITATION_SESSION_KEY not in client.session


def test_a_member_who_left_is_placed_anew_at_the_next_google_sign_in(world, api_as, google, client):
    assert api_as(world.member_b).post("/api/v1/org/leave").status_code == 204
    google(client, "member@org-b.test")
    user = User.objects.select_related("organisation").get(pk=world.member_b.pk)
    assert user.organisation_id not in (None, world.org_b.pk)
    assert user.organisation.is_personal
    assert user.role == Role.ADMIN


def test_a_workspace_member_who_left_rejoins_their_domain_as_a_new_user_would(world, api_as, google, client):
    assert world.org_b.domain_auto_join
    assert api_as(world.member_b).post("/api/v1/org/leave").status_code == 204
    google(client, "member@org-b.test", hd="org-b.test")
    user = User.objects.get(pk=world.member_b.pk)
    assert user.organisation_id == world.org_b.pk
    assert user.role == Role.MEMBER


def test_a_workspace_member_who_left_is_refused_when_the_domain_needs_an_invitation(
    world, api_as, google, client
):
    api_as(world.admin_b).patch("/api/v1/org", {"domain_auto_join": False}, format="json")
    assert api_as(world.member_b).post("/api/v1/org/leave").status_code == 204
    refused = google(client, "member@org-b.test", hd="org-b.test")
    assert refused.status_code == 403
    assert "by invitation only" in refused.content.decode()
    assert User.objects.get(pk=world.member_b.pk).organisation_id is None


# --- 6. domain_auto_join --------------------------------------------------------------------


def test_only_an_admin_changes_domain_auto_join_and_the_change_is_recorded(world, api_as):
    refused = api_as(world.member_a).patch("/api/v1/org", {"domain_auto_join": False}, format="json")
    assert refused.status_code == 403
    world.org_a.refresh_from_db()
    assert world.org_a.domain_auto_join is True

    response = api_as(world.admin_a).patch("/api/v1/org", {"domain_auto_join": False}, format="json")
    assert response.status_code == 200
    assert response.json()["data"]["domain_auto_join"] is False
    world.org_a.refresh_from_db()
    assert world.org_a.domain_auto_join is False
    updated = _events(world.org_a, "organisation.updated")
    assert [(e.actor_label, e.changes) for e in updated] == [
        (
            "user:admin@org-a.test",
            {"before": {"domain_auto_join": True}, "after": {"domain_auto_join": False}},
        )
    ]
    # The same value again changes nothing and records nothing.
    api_as(world.admin_a).patch("/api/v1/org", {"domain_auto_join": False}, format="json")
    assert _events(world.org_a, "organisation.updated").count() == 1


def test_with_domain_auto_join_off_a_workspace_user_needs_an_invitation(world, api_as, google, client):
    api_as(world.admin_a).patch("/api/v1/org", {"domain_auto_join": False}, format="json")
    organisations = Organisation.objects.count()

    refused = google(client, "newhire@org-a.test", hd="org-a.test")
    assert refused.status_code == 403
    assert "ask one of its admins to invite" in refused.content.decode().lower()
    assert not User.objects.filter(email="newhire@org-a.test").exists()
    assert Organisation.objects.count() == organisations
    assert client.get("/").status_code == 302  # not signed in

    invitation = _invite(world.org_a, world.admin_a, "newhire@org-a.test")
    response = google(client, "newhire@org-a.test", hd="org-a.test", start=_google_start(client, invitation))
    assert response.status_code == 302
    newhire = User.objects.get(email="newhire@org-a.test")
    assert newhire.organisation_id == world.org_a.pk
    assert newhire.role == Role.MEMBER
    invitation.refresh_from_db()
    assert invitation.status == "accepted"


def test_turning_domain_auto_join_back_on_lets_the_domain_join(world, google, client):
    client.force_login(world.admin_a)
    assert client.post("/members/settings", {}).status_code == 302  # the switch off
    world.org_a.refresh_from_db()
    assert world.org_a.domain_auto_join is False
    assert client.post("/members/settings", {"domain_auto_join": "on"}).status_code == 302
    world.org_a.refresh_from_db()
    assert world.org_a.domain_auto_join is True
    assert _events(world.org_a, "organisation.updated").count() == 2
    client.logout()

    response = google(client, "newhire@org-a.test", hd="org-a.test")
    assert response.status_code == 302
    newhire = User.objects.get(email="newhire@org-a.test")
    assert newhire.organisation_id == world.org_a.pk
    assert newhire.role == Role.MEMBER


def test_domain_auto_join_off_does_not_stop_free_mail_or_existing_members(world, api_as, google, client):
    api_as(world.admin_a).patch("/api/v1/org", {"domain_auto_join": False}, format="json")
    google(client, "member@org-a.test", hd="org-a.test")
    assert User.objects.get(pk=world.member_a.pk).organisation_id == world.org_a.pk
    client.logout()
    google(client, "loner@gmail.com")
    assert User.objects.select_related("organisation").get(email="loner@gmail.com").organisation.is_personal


def test_a_member_cannot_change_the_setting_from_the_page(world, client):
    client.force_login(world.member_a)
    assert client.post("/members/settings", {}).status_code == 403
    world.org_a.refresh_from_db()
    assert world.org_a.domain_auto_join is True


# --- 7. A send that keeps failing ------------------------------------------------------------


@pytest.mark.parametrize("retries", range(len(INVITATION_RETRY_DELAYS)))
def test_a_failed_send_is_retried_with_backoff(world, smtp_down, retries):
    invitation = _invite(world.org_a, world.admin_a, "unlucky@example.com")
    with pytest.raises(Retry) as retry:
        send_invitation.apply(args=[str(invitation.pk), invitation.nonce], retries=retries, throw=True)
    assert retry.value.when == INVITATION_RETRY_DELAYS[retries]
    invitation.refresh_from_db()
    assert invitation.last_send_error == ""
    assert invitation.sent_count == 0


def test_the_last_failed_attempt_keeps_the_error_for_the_members_page(world, smtp_down, client):
    invitation = _invite(world.org_a, world.admin_a, "unlucky@example.com")
    result = send_invitation.apply(
        args=[str(invitation.pk), invitation.nonce], retries=len(INVITATION_RETRY_DELAYS)
    )
    assert result.successful()
    invitation.refresh_from_db()
    assert invitation.sent_count == 0
    assert "could not be sent" in invitation.last_send_error
    assert "ConnectionRefusedError" in invitation.last_send_error

    client.force_login(world.admin_a)
    row = _invitation_row(client.get("/members").content.decode(), "unlucky@example.com")
    assert "failed" in row
    assert "could not be sent" in row
    assert 'value="resend"' in row

    # Resending clears the error until the next attempt says otherwise.
    assert (
        client.post(f"/members/invitations/{invitation.pk}/action", {"action": "resend"}).status_code == 302
    )
    invitation.refresh_from_db()
    assert invitation.last_send_error == ""


def test_every_retry_is_tried_before_the_error_is_kept(world, smtp_refusing):
    invitation = _invite(world.org_a, world.admin_a, "unlucky@example.com")
    # Run eagerly, apply() makes each retry itself, until the last one gives up.
    result = send_invitation.apply(args=[str(invitation.pk), invitation.nonce])
    assert result.successful()
    assert smtp_refusing.attempts == 1 + len(INVITATION_RETRY_DELAYS)
    invitation.refresh_from_db()
    assert "SMTPDataError" in invitation.last_send_error
    assert invitation.last_sent_at is None
    assert invitation.sent_count == 0


def test_the_error_is_cleared_by_a_later_successful_send(world, smtp, settings):
    invitation = _invite(world.org_a, world.admin_a, "unlucky@example.com")
    Invitation.objects.filter(pk=invitation.pk).update(last_send_error="The email could not be sent (X).")
    assert send_invitation.apply(args=[str(invitation.pk), invitation.nonce]).successful()
    invitation.refresh_from_db()
    assert invitation.last_send_error == ""
    assert invitation.sent_count == 1
    assert len(smtp.received) == 1


def _removed(world, api_as) -> User:
    member = world.member_a
    member.set_password("the-old-Password-1")
    member.save(update_fields=["password"])
    assert api_as(world.admin_a).delete(f"/api/v1/org/members/{member.pk}").status_code == 204
    member.refresh_from_db()
    assert (member.is_active, member.organisation_id) == (False, None)
    return member


def test_a_removed_member_invited_back_sets_a_new_password_and_is_in_again(world, api_as, client):
    member = _removed(world, api_as)
    invitation = _invite(world.org_a, world.admin_a, member.email, role=Role.ADMIN)
    page = client.get(_link(invitation))
    # The inactive account cannot sign in: the page offers the password form, not sign-in.
    assert page.status_code == 200
    assert "data-invitation-password" in page.content.decode()

    response = client.post(
        _link(invitation),
        {
            "action": "password",
            "name": "Back Again",
            "password": "a-New-passw0rd-42",
            "password_again": "a-New-passw0rd-42",
        },
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.is_active, member.organisation_id, member.role) == (True, world.org_a.pk, Role.ADMIN)
    assert member.check_password("a-New-passw0rd-42")
    assert not member.check_password("the-old-Password-1")
    assert client.get("/").status_code == 200


def test_a_removed_member_invited_back_joins_by_google_sign_in(world, api_as, google, client):
    member = _removed(world, api_as)
    invitation = _invite(world.org_a, world.admin_a, member.email)

    response = google(client, member.email, start=_google_start(client, invitation))
    assert response.status_code == 302
    assert response["Location"] == "/"
    member.refresh_from_db()
    assert (member.is_active, member.organisation_id, member.role) == (True, world.org_a.pk, Role.MEMBER)
    invitation.refresh_from_db()
    assert invitation.status == "accepted"
    assert client.get("/").status_code == 200


def test_a_removed_member_without_an_invitation_stays_out(world, api_as, google, client):
    member = _removed(world, api_as)
    google(client, member.email)
    member.refresh_from_db()
    assert (member.is_active, member.organisation_id) == (False, None)
    assert client.get("/").status_code != 200


def test_another_site_cannot_plant_an_invitation_in_a_visitors_session(world, google, client):
    invitation = _invite(world.org_b, world.admin_b, "victim@gmail.com", role=Role.MEMBER)
    token = invitations.invitation_token(invitation)
    # A link or an image on another site can only GET: refused, nothing remembered.
    assert client.get(f"/invitations/{token}/google").status_code == 405
    assert invitations.INVITATION_SESSION_KEY not in client.session
    # And a token left in the session by an abandoned invitation is not used by a sign-in
    # that did not start from that invitation's page.
    session = client.session
    session[invitations.INVITATION_SESSION_KEY] = token
    session.save()
    google(client, "victim@gmail.com")
    victim = User.objects.get(email="victim@gmail.com")
    assert victim.organisation_id != world.org_b.pk
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_the_google_step_needs_the_pages_csrf_token(world):
    invitation = _invite(world.org_a, world.admin_a, "csrf@example.com")
    strict = Client(enforce_csrf_checks=True)
    token = invitations.invitation_token(invitation)
    assert strict.post(f"/invitations/{token}/google").status_code == 403
    page = strict.get(f"/invitations/{token}")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = strict.post(f"/invitations/{token}/google", {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 302


def test_an_operator_locked_account_is_not_brought_back_by_an_invitation(world, api_as, client):
    operator = User.objects.create_superuser("root@ops.example", "operator-Password-1")
    operator.is_active = False
    operator.save(update_fields=["is_active"])
    invitation = _invite(world.org_a, world.admin_a, "root@ops.example", role=Role.ADMIN)
    response = client.post(
        _link(invitation),
        {"action": "password", "password": "a-New-passw0rd-42", "password_again": "a-New-passw0rd-42"},
    )
    assert response.status_code == 409
    operator.refresh_from_db()
    assert not operator.is_active
    assert operator.organisation_id is None
    assert not operator.check_password("a-New-passw0rd-42")


def test_a_member_locked_by_an_operator_after_removal_stays_locked(world, api_as, client):
    member = _removed(world, api_as)
    # The operator's lock (deactivation in the admin) clears what an invitation may undo.
    operator = User.objects.create_superuser("ops@ops.example", "operator-Password-1")
    admin_client = Client()
    admin_client.force_login(operator)
    page = admin_client.get(f"/admin/tenants/user/{member.pk}/change/")
    assert page.status_code == 200
    member.refresh_from_db()
    User.objects.filter(pk=member.pk).update(is_active=True)
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update({"email": member.email, "role": "member", "organisation": "", "is_active": ""})
    data.pop("password", None)
    data.pop("groups", None)
    data.pop("user_permissions", None)
    data["last_login"] = ""
    data["date_joined"] = ""
    response = admin_client.post(f"/admin/tenants/user/{member.pk}/change/", data)
    assert response.status_code in (200, 302)
    member.refresh_from_db()
    assert member.removed_at is None and not member.is_active
    invitation = _invite(world.org_a, world.admin_a, member.email)
    response = client.post(
        _link(invitation),
        {"action": "password", "password": "a-New-passw0rd-42", "password_again": "a-New-passw0rd-42"},
    )
    assert response.status_code == 409


def test_a_removed_or_demoted_admins_invitations_and_keys_are_withdrawn(world, api_as):
    from tenants.services.keys import api_key_create

    second = world.admin_a
    api_as(second).patch(f"/api/v1/org/members/{world.member_a.pk}", {"role": "admin"}, format="json")
    sent = _invite(world.org_a, world.member_a, "accomplice@example.com", role=Role.ADMIN)
    key, _ = api_key_create(org=world.org_a, created_by=world.member_a, name="theirs", scopes=["jobs:read"])
    response = api_as(second).patch(
        f"/api/v1/org/members/{world.member_a.pk}", {"role": "member"}, format="json"
    )
    assert response.status_code == 200
    sent.refresh_from_db()
    key.refresh_from_db()
    assert sent.status == "revoked" and key.revoked
    revoked = _events(world.org_a, "invitation.revoked", target_id=str(sent.pk))
    assert [e.changes["reason"] for e in revoked] == ["inviter_demoted"]

    api_as(second).patch(f"/api/v1/org/members/{world.member_a.pk}", {"role": "admin"}, format="json")
    again = _invite(world.org_a, world.member_a, "accomplice2@example.com", role=Role.ADMIN)
    assert api_as(second).delete(f"/api/v1/org/members/{world.member_a.pk}").status_code == 204
    again.refresh_from_db()
    assert again.status == "revoked"
    assert [
        e.changes["reason"] for e in _events(world.org_a, "invitation.revoked", target_id=str(again.pk))
    ] == ["inviter_removed"]


def test_resending_waits_for_the_cooldown_and_stops_after_the_most_sends(world, api_as, settings):
    settings.INVITATION_RESEND_COOLDOWN_SECONDS = 600
    settings.INVITATION_MAX_SENDS = 2
    client = api_as(world.admin_a)
    invitation = _invite(world.org_a, world.admin_a, "patient@example.com")
    response = client.post(f"/api/v1/invitations/{invitation.pk}/resend")
    assert response.status_code == 409
    assert _error(response)["code"] == "LIMIT_REACHED"
    assert 0 < _error(response)["details"]["retry_after"] <= 600
    # Once the cooldown has passed: sent again, until the most sends.
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS, seconds=-601), sent_count=1
    )
    assert client.post(f"/api/v1/invitations/{invitation.pk}/resend").status_code == 200
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS, seconds=-601), sent_count=2
    )
    refused = client.post(f"/api/v1/invitations/{invitation.pk}/resend")
    assert refused.status_code == 409
    assert _error(refused)["details"]["limit"] == "sends_per_invitation"


def test_an_organisation_sends_at_most_its_daily_invitations(world, api_as, settings):
    settings.ORG_MAX_INVITATIONS_PER_DAY = 2
    client = api_as(world.admin_a)
    for n in range(2):
        assert (
            client.post("/api/v1/invitations", {"email": f"d{n}@example.com"}, format="json").status_code
            == 201
        )
    # Withdrawing does not give the day's sends back.
    first = Invitation.objects.get(email="d0@example.com")
    assert client.delete(f"/api/v1/invitations/{first.pk}").status_code == 204
    refused = client.post("/api/v1/invitations", {"email": "d2@example.com"}, format="json")
    assert refused.status_code == 409
    assert _error(refused)["details"]["limit"] == "invitations_per_day"
    # Another organisation's day is its own.
    assert (
        api_as(world.admin_b)
        .post("/api/v1/invitations", {"email": "d2@example.com"}, format="json")
        .status_code
        == 201
    )


def test_an_invitation_whose_email_was_lost_is_sent_again_by_the_sweep(
    world, broker, django_capture_on_commit_callbacks
):
    lost = _invite(world.org_a, world.admin_a, "lost@example.com")
    _invite(world.org_a, world.admin_a, "fresh@example.com")  # made just now: not lost
    delivered = _invite(world.org_a, world.admin_a, "delivered@example.com")
    failed = _invite(world.org_a, world.admin_a, "failed@example.com")
    long_ago = timezone.now() + timedelta(days=7) - timedelta(minutes=20)
    Invitation.objects.filter(pk__in=[lost.pk, delivered.pk, failed.pk]).update(expires_at=long_ago)
    Invitation.objects.filter(pk=delivered.pk).update(last_sent_at=timezone.now(), sent_count=1)
    Invitation.objects.filter(pk=failed.pk).update(last_send_error="SMTPConnectError")

    sent = broker.watch("tenants.send_invitation", shape=lambda message: message.args)
    with django_capture_on_commit_callbacks(execute=True):
        assert invitations.invitations_resend_unsent() == 1
    # Only the invitation made 20 minutes ago whose email neither went out nor failed.
    assert sent == [[str(lost.pk), lost.nonce]]


def test_a_second_copy_of_a_links_message_sends_nothing(world, smtp):
    invitation = _invite(world.org_a, world.admin_a, "once@example.com")
    for _ in range(2):  # the message, and a copy the sweep queued while it waited
        assert send_invitation.apply(args=[str(invitation.pk), invitation.nonce]).successful()
    assert len(smtp.received) == 1
    invitation.refresh_from_db()
    assert invitation.sent_count == 1


def test_a_resent_invitation_whose_message_was_lost_is_sent_again_by_the_sweep(
    world, api_as, smtp, broker, django_capture_on_commit_callbacks
):
    invitation = _invite(world.org_a, world.admin_a, "resent-lost@example.com")
    assert send_invitation.apply(args=[str(invitation.pk), invitation.nonce]).successful()
    assert api_as(world.admin_a).post(f"/api/v1/invitations/{invitation.pk}/resend").status_code == 200
    invitation.refresh_from_db()
    assert invitation.last_sent_at is None  # the new link's email has not gone out
    # Its message never reached a worker; 20 minutes later the sweep queues it again.
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() + timedelta(days=7) - timedelta(minutes=20)
    )
    invitation.refresh_from_db()
    sent = broker.watch("tenants.send_invitation", shape=lambda message: message.args)
    with django_capture_on_commit_callbacks(execute=True):
        assert invitations.invitations_resend_unsent() == 1
    assert sent == [[str(invitation.pk), invitation.nonce]]


def test_the_password_form_is_refused_for_an_address_with_an_active_account(world, client):
    invitation = _invite(world.org_a, world.admin_a, world.member_b.email)
    before = User.objects.get(pk=world.member_b.pk).password
    response = client.post(
        _link(invitation),
        {"action": "password", "password": "a-New-passw0rd-42", "password_again": "a-New-passw0rd-42"},
    )
    assert response.status_code == 400  # the page offers signing in, not a password
    with pytest.raises(invitations.InvitationRefused) as refused:
        invitations.invitation_accept_with_password(invitation=invitation, password="a-New-passw0rd-42")
    assert refused.value.details["reason"] == "has_account"
    member = User.objects.get(pk=world.member_b.pk)
    assert (member.password, member.organisation_id) == (before, world.org_b.pk)


def test_accepting_a_link_that_was_replaced_or_withdrawn_meanwhile_is_refused(world):
    newcomer = User.objects.create_user("late-click@example.com", "a-New-passw0rd-42", organisation=None)
    invitation = _invite(world.org_a, world.admin_a, newcomer.email)
    old_nonce = invitation.nonce
    invitations.invitation_resend(org=world.org_a, invitation_id=invitation.pk)
    with pytest.raises(invitations.InvitationRefused) as refused:
        invitations.invitation_accept(invitation_id=invitation.pk, nonce=old_nonce, user=newcomer)
    assert refused.value.details["reason"] == "unusable"
    invitation.refresh_from_db()
    invitations.invitation_revoke(org=world.org_a, invitation_id=invitation.pk)
    with pytest.raises(invitations.InvitationRefused) as refused:
        invitations.invitation_accept(invitation_id=invitation.pk, nonce=invitation.nonce, user=newcomer)
    assert refused.value.details["reason"] == "unusable"
    newcomer.refresh_from_db()
    assert newcomer.organisation_id is None
