"""Revoking tokens before they expire: a replayed refresh token ends its whole family (the
sign-in it was stolen from), and "sign out everywhere" ends every token and session of one
user at once, leaving everyone else's alone."""

import logging
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tenants.models import TokenFamily, User
from tenants.services import token_families_flush_expired
from tenants.tests.helpers import bearer_for

pytestmark = pytest.mark.django_db

COOKIE = settings.REFRESH_COOKIE_NAME


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _status(token: str, path: str = "/api/v1/auth/me") -> int:
    return _bearer(token).get(path).status_code


def _refresh(refresh_token: str, version: str = "v1"):
    client = APIClient()
    client.cookies[COOKIE] = refresh_token
    return client.post(f"/api/{version}/auth/refresh")


def _sign_in(user: User, version: str = "v1") -> tuple[str, str]:
    """A new sign-in through the session -> token exchange: (access, refresh)."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(User.objects.get(pk=user.pk))  # the current token_version
    client.get("/")
    response = client.post(f"/api/{version}/auth/token", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert response.status_code == 200
    return response.json()["data"]["access"], response.cookies[COOKIE].value


def _claims(token: str) -> dict:
    """The claims of a token, even a revoked one (tests only read them)."""
    return jwt.decode(token, options={"verify_signature": False})


def _rotate(refresh_token: str) -> tuple[str, str]:
    response = _refresh(refresh_token)
    assert response.status_code == 200, response.content
    return response.json()["data"]["access"], response.cookies[COOKIE].value


def _reuse_events(caplog):
    return [
        record.msg
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "auth.refresh_token_reuse"
    ]


# --- Token families -----------------------------------------------------------------------


def test_tokens_carry_the_users_version_and_their_family(world):
    access, refresh = _sign_in(world.member_a)
    claims, refresh_claims = AccessToken(access), RefreshToken(refresh)
    assert claims["ver"] == refresh_claims["ver"] == world.member_a.token_version == 0
    family = TokenFamily.objects.get(pk=claims["fam"])
    assert refresh_claims["fam"] == str(family.pk)
    assert family.user_id == world.member_a.pk
    assert family.revoked_at is None


def test_rotation_keeps_the_family(world):
    _, first = _sign_in(world.member_a)
    access, second = _rotate(first)
    assert _claims(second)["fam"] == _claims(first)["fam"] == _claims(access)["fam"]


def test_replaying_a_rotated_refresh_token_revokes_its_whole_family(world, caplog):
    caplog.set_level(logging.WARNING, logger="tenants.services")
    first_access, first = _sign_in(world.member_a)
    second_access, second = _rotate(first)  # the thief (or the owner) rotates
    third_access, third = _rotate(second)  # a child of the stolen token

    replay = _refresh(first)

    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "UNAUTHORIZED"
    # Every refresh token descending from that sign-in is dead, the newest included...
    assert _refresh(third).status_code == 401
    assert _refresh(second).status_code == 401
    # ...and so are the access tokens issued with them, at once.
    for access in (first_access, second_access, third_access):
        assert _status(access) == 401
    family = TokenFamily.objects.get(pk=_claims(third)["fam"])
    assert family.revoked_reason == TokenFamily.RevokedReason.REUSE
    assert family.revoked_at is not None


def test_refresh_token_reuse_is_logged_as_a_security_event_without_token_material(world, caplog):
    caplog.set_level(logging.WARNING, logger="tenants.services")
    _, first = _sign_in(world.member_a)
    _rotate(first)
    _refresh(first)

    events = _reuse_events(caplog)
    assert len(events) == 1
    event = events[0]
    assert event["user_id"] == str(world.member_a.pk)
    assert event["family_id"] == _claims(first)["fam"]
    [record] = [r for r in caplog.records if r.msg is event]
    assert record.levelno == logging.WARNING
    assert first not in str(event)
    assert _claims(first)["jti"] not in str(event)


def test_reuse_ends_only_that_sign_in(world):
    laptop_access, laptop_refresh = _sign_in(world.member_a)
    _, stolen = _sign_in(world.member_a)
    _rotate(stolen)
    assert _refresh(stolen).status_code == 401  # replay: that family is revoked

    assert _status(laptop_access) == 200
    assert _rotate(laptop_refresh)
    assert _status(bearer_for(world.member_b)) == 200


def test_a_second_replay_is_refused_without_a_second_event(world, caplog):
    caplog.set_level(logging.WARNING, logger="tenants.services")
    _, first = _sign_in(world.member_a)
    _rotate(first)
    assert _refresh(first).status_code == 401
    assert _refresh(first).status_code == 401
    assert len(_reuse_events(caplog)) == 1


def test_logout_ends_the_access_tokens_of_that_sign_in(world):
    access, refresh = _sign_in(world.member_a)
    other_access, _ = _sign_in(world.member_a)
    client = APIClient()
    client.cookies[COOKIE] = refresh
    assert client.post("/api/v1/auth/logout").status_code == 204

    assert _status(access) == 401
    assert _status(other_access) == 200
    assert TokenFamily.objects.get(pk=_claims(access)["fam"]).revoked_reason == "logout"


def test_refresh_token_signed_with_another_key_is_refused(world):
    _, refresh = _sign_in(world.member_a)
    forged = jwt.encode(_claims(refresh), "not-the-signing-key-but-long-enough-0123456789", algorithm="HS256")
    assert _refresh(forged).status_code == 401
    assert _rotate(refresh)


@pytest.mark.parametrize("claim", ["ver", "fam"])
def test_access_token_without_version_or_family_is_refused(world, claim):
    token = AccessToken(bearer_for(world.member_a))
    del token[claim]
    assert _status(str(token)) == 401


def test_family_of_another_user_does_not_make_a_token_valid(world):
    token = AccessToken(bearer_for(world.member_a))
    token["fam"] = AccessToken(bearer_for(world.member_b))["fam"]
    assert _status(str(token)) == 401


# --- Sign out everywhere ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_sign_out_everywhere_ends_every_token_of_the_caller_at_once(world, version):
    laptop_access, laptop_refresh = _sign_in(world.member_a, version)
    phone_access, phone_refresh = _sign_in(world.member_a, version)
    rotated_access, rotated_refresh = _rotate(phone_refresh)
    others_access, others_refresh = _sign_in(world.member_b, version)

    response = _bearer(laptop_access).post(f"/api/{version}/auth/logout-all")

    assert response.status_code == 204
    assert response.cookies[COOKIE].value == ""
    assert response.cookies[COOKIE]["path"] == f"/api/{version}/auth/"
    # Access tokens issued before the call fail on their very next use, not in 15 minutes.
    for access in (laptop_access, phone_access, rotated_access):
        response = _bearer(access).get(f"/api/{version}/org")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
    for refresh in (laptop_refresh, rotated_refresh):
        assert _refresh(refresh, version).status_code == 401
    # Another user is untouched.
    assert _status(others_access) == 200
    assert _rotate(others_refresh)
    # Signing in again works, with the new version.
    new_access, _ = _sign_in(world.member_a, version)
    assert _status(new_access) == 200
    assert AccessToken(new_access)["ver"] == 1


def test_sign_out_everywhere_needs_a_caller(world):
    response = APIClient().post("/api/v1/auth/logout-all")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert User.objects.get(pk=world.member_a.pk).token_version == 0


def test_sign_out_everywhere_by_session_requires_csrf(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.member_a)
    client.get("/")
    assert client.post("/api/v1/auth/logout-all").status_code == 403
    assert User.objects.get(pk=world.member_a.pk).token_version == 0
    response = client.post("/api/v1/auth/logout-all", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert response.status_code == 204
    assert User.objects.get(pk=world.member_a.pk).token_version == 1


def test_sign_out_everywhere_ends_every_browser_session(world):
    laptop, phone, colleague = Client(), Client(), Client()
    laptop.force_login(world.member_a)
    phone.force_login(world.member_a)
    colleague.force_login(world.member_b)
    assert phone.get("/").status_code == 200

    assert _bearer(bearer_for(world.member_a)).post("/api/v1/auth/logout-all").status_code == 204

    for client in (laptop, phone):
        response = client.get("/")
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert colleague.get("/").status_code == 200


def test_sessions_from_before_token_versions_stay_valid(world):
    # Version 0 keeps Django's own session hash, so deploying this signs nobody out.
    from django.contrib.auth.base_user import AbstractBaseUser

    user = world.member_a
    assert user.get_session_auth_hash() == AbstractBaseUser._get_session_auth_hash(user)


# --- The page action ------------------------------------------------------------------------


@pytest.fixture
def page_client(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.member_a)
    return client


def _csrf(client) -> str:
    return client.cookies["csrftoken"].value


def test_api_access_page_offers_sign_out_everywhere_as_a_csrf_protected_form(page_client):
    page = page_client.get("/api-access").content.decode()
    form = page[page.index('action="/account/sign-out-everywhere"') - 40 :]
    form = form[: form.index("</form>")]
    assert 'method="post"' in form
    assert 'name="csrfmiddlewaretoken"' in form
    assert "data-confirm=" in form
    assert "onclick" not in form
    assert "<script" not in form


def test_sign_out_everywhere_page_asks_first(page_client, world):
    page_client.get("/api-access")
    response = page_client.post("/account/sign-out-everywhere", {"csrfmiddlewaretoken": _csrf(page_client)})
    assert response.status_code == 200
    assert 'name="confirmed" value="sign-out-everywhere"' in response.content.decode()
    assert User.objects.get(pk=world.member_a.pk).token_version == 0


def test_sign_out_everywhere_page_ends_every_session_and_token(page_client, world):
    page_client.get("/api-access")
    access, refresh = _sign_in(world.member_a)
    other_browser = Client()
    other_browser.force_login(world.member_a)

    response = page_client.post(
        "/account/sign-out-everywhere",
        {"csrfmiddlewaretoken": _csrf(page_client), "confirmed": "sign-out-everywhere"},
    )

    assert response.status_code == 302
    assert response["Location"] == settings.LOGIN_URL
    assert page_client.get("/")["Location"].startswith("/accounts/login/")
    assert other_browser.get("/")["Location"].startswith("/accounts/login/")
    assert _status(access) == 401
    assert _refresh(refresh).status_code == 401


def test_sign_out_everywhere_page_refuses_without_csrf(page_client, world):
    response = page_client.post("/account/sign-out-everywhere", {"confirmed": "sign-out-everywhere"})
    assert response.status_code == 403
    assert User.objects.get(pk=world.member_a.pk).token_version == 0


def test_sign_out_everywhere_page_takes_only_post(page_client):
    assert page_client.get("/account/sign-out-everywhere").status_code == 405


def test_sign_out_everywhere_page_sends_signed_out_visitors_to_sign_in(client):
    response = client.post("/account/sign-out-everywhere")
    assert response.status_code == 302
    assert response["Location"] == settings.LOGIN_URL


# --- Other ways a user's tokens end -------------------------------------------------------


def test_removing_a_member_ends_their_sessions_and_tokens(world, api_as):
    access, refresh = _sign_in(world.member_a)
    browser = Client()
    browser.force_login(world.member_a)

    assert api_as(world.admin_a).delete(f"/api/v1/org/members/{world.member_a.pk}").status_code == 204

    member = User.objects.get(pk=world.member_a.pk)
    assert member.token_version == 1
    assert not TokenFamily.objects.filter(user=member, revoked_at__isnull=True).exists()
    assert _status(access) == 401
    assert _refresh(refresh).status_code == 401
    assert browser.get("/")["Location"].startswith("/accounts/login/")


def test_operator_deactivating_a_user_in_the_admin_ends_their_tokens(world):
    access, _ = _sign_in(world.member_a)
    operator = Client()
    operator.force_login(User.objects.create_superuser("root@nexus.test", "operator-password-123"))
    page = operator.get(f"/admin/tenants/user/{world.member_a.pk}/change/")
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.pop("is_active", None)  # unchecked box: deactivate
    data.update({"organisation": str(world.org_a.pk), "groups": [], "user_permissions": []})
    response = operator.post(f"/admin/tenants/user/{world.member_a.pk}/change/", data)
    assert response.status_code == 302, response.content

    member = User.objects.get(pk=world.member_a.pk)
    assert not member.is_active
    assert member.token_version == 1
    assert TokenFamily.objects.get(pk=_claims(access)["fam"]).revoked_reason == "deactivated"
    assert _status(access) == 401


def test_role_change_does_not_sign_the_member_out(world, api_as):
    """The role is read from the database on every request, so a demotion works at once;
    ending the member's tokens as well would only sign them out of every client."""
    access, refresh = _sign_in(world.member_a)
    response = api_as(world.admin_a).patch(
        f"/api/v1/org/members/{world.member_a.pk}", {"role": "admin"}, format="json"
    )
    assert response.status_code == 200
    assert _status(access) == 200
    assert _rotate(refresh)
    assert User.objects.get(pk=world.member_a.pk).token_version == 0


def test_expired_token_families_are_flushed(world):
    _, refresh = _sign_in(world.member_a)
    live = TokenFamily.objects.get(pk=_claims(refresh)["fam"])
    expired = TokenFamily.objects.create(
        user=world.member_a, expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert token_families_flush_expired() == 1
    assert TokenFamily.objects.filter(pk=live.pk).exists()
    assert not TokenFamily.objects.filter(pk=expired.pk).exists()


def test_operator_signs_a_user_out_everywhere_from_the_admin(world):
    access, _ = _sign_in(world.member_a)
    others_access, _ = _sign_in(world.member_b)
    operator = Client()
    operator.force_login(User.objects.create_superuser("root@nexus.test", "operator-password-123"))
    response = operator.post(
        "/admin/tenants/user/",
        {"action": "sign_out_everywhere", "_selected_action": [str(world.member_a.pk)]},
    )
    assert response.status_code == 302
    assert _status(access) == 401
    assert _status(others_access) == 200


def test_revocation_checks_cost_no_query_beyond_loading_the_user(world, django_assert_num_queries):
    from tenants.authentication import caller_from_bearer

    token = bearer_for(world.member_a)
    # One statement loads the user, the organisation and whether the family is live.
    with django_assert_num_queries(1):
        caller = caller_from_bearer(token)
    assert caller.user.pk == world.member_a.pk
