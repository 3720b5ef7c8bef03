"""Access and refresh tokens: who is refused, rotation, blacklisting."""

from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tenants.authentication import refresh_token_for
from tenants.tests.helpers import bearer_for

pytestmark = pytest.mark.django_db


def _get(token: str, path: str = "/api/v1/auth/me"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(path)


def _assert_401(response):
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_valid_token_identifies_user_org_and_role(world):
    body = _get(bearer_for(world.member_a)).json()["data"]
    assert body["user"]["email"] == "member@org-a.test"
    assert body["organisation"]["slug"] == world.org_a.slug
    assert body["role"] == "member"


def test_access_token_claims_and_lifetime(world):
    token = AccessToken(bearer_for(world.admin_a))
    assert token["user_id"] == str(world.admin_a.pk)
    assert token["org"] == str(world.org_a.pk)
    assert token["role"] == "admin"
    assert token["exp"] - token["iat"] == 15 * 60


def test_tampered_token_is_refused(world):
    header, _payload, signature = bearer_for(world.member_a).split(".")
    claims = jwt.decode(bearer_for(world.member_a), options={"verify_signature": False})
    claims["org"] = str(world.org_b.pk)
    forged_payload = jwt.encode(
        claims, "irrelevant-key-for-the-payload-only-0123456789", algorithm="HS256"
    ).split(".")[1]
    _assert_401(_get(f"{header}.{forged_payload}.{signature}"))


def test_wrong_signature_is_refused(world):
    claims = jwt.decode(bearer_for(world.member_a), options={"verify_signature": False})
    _assert_401(_get(jwt.encode(claims, "not-the-signing-key-but-long-enough-0123456789", algorithm="HS256")))


def test_expired_token_is_refused(world):
    token = refresh_token_for(world.member_a).access_token
    token.set_exp(lifetime=-timedelta(seconds=1))
    _assert_401(_get(str(token)))


def test_garbage_and_empty_tokens_are_refused(world):
    _assert_401(_get("not.a.jwt"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer ")
    _assert_401(client.get("/api/v1/org"))


def test_token_without_org_claim_is_refused(world):
    token = AccessToken.for_user(world.member_a)  # no "org" claim, as for an operator
    _assert_401(_get(str(token)))


def test_inactive_user_is_refused(world):
    token = bearer_for(world.member_a)
    world.member_a.is_active = False
    world.member_a.save()
    _assert_401(_get(token))


def test_user_moved_to_another_organisation_is_refused(world):
    token = bearer_for(world.member_a)
    world.member_a.organisation = world.org_b
    world.member_a.save()
    _assert_401(_get(token))


def test_deactivated_organisation_is_forbidden(world):
    token = bearer_for(world.member_a)
    world.org_a.is_active = False
    world.org_a.save()
    response = _get(token)
    assert response.status_code == 403


def test_demotion_takes_effect_before_the_token_expires(world, api_as):
    world.org_a.users.filter(pk=world.member_a.pk).update(role="admin")
    world.member_a.refresh_from_db()
    client = api_as(world.member_a)  # token says role=admin
    world.org_a.users.filter(pk=world.member_a.pk).update(role="member")
    response = client.patch(f"/api/v1/org/members/{world.admin_a.pk}", {"role": "member"}, format="json")
    assert response.status_code == 403


# --- Session -> token, refresh, logout ------------------------------------------------------


@pytest.fixture
def signed_in(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.member_a)
    client.get("/")  # sets the csrftoken cookie like a page load would
    return client


def _csrf(client) -> dict:
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


def test_token_endpoint_requires_csrf(signed_in):
    response = signed_in.post("/api/v1/auth/token")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


def test_token_endpoint_requires_a_session(client):
    assert client.post("/api/v1/auth/token").status_code == 401


def test_token_endpoint_returns_access_and_sets_refresh_cookie(signed_in, world):
    response = signed_in.post("/api/v1/auth/token", **_csrf(signed_in))
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["token_type"] == "Bearer"
    assert 0 < data["expires_in"] <= 900
    assert _get(data["access"]).json()["data"]["user"]["email"] == world.member_a.email
    cookie = response.cookies[settings.REFRESH_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/api/v1/auth/"
    assert int(cookie["max-age"]) == 7 * 24 * 3600
    assert "refresh" not in data


def test_refresh_rotates_and_old_refresh_token_is_refused(signed_in):
    signed_in.post("/api/v1/auth/token", **_csrf(signed_in))
    first = signed_in.cookies[settings.REFRESH_COOKIE_NAME].value

    response = signed_in.post("/api/v1/auth/refresh")
    assert response.status_code == 200
    second = signed_in.cookies[settings.REFRESH_COOKIE_NAME].value
    assert second != first
    assert _get(response.json()["data"]["access"]).status_code == 200

    replay = APIClient()
    replay.cookies[settings.REFRESH_COOKIE_NAME] = first
    _assert_401(replay.post("/api/v1/auth/refresh"))


def test_v2_clients_get_a_refresh_cookie_their_refresh_endpoint_receives(signed_in):
    response = signed_in.post("/api/v2/auth/token", **_csrf(signed_in))
    assert response.cookies[settings.REFRESH_COOKIE_NAME]["path"] == "/api/v2/auth/"
    refreshed = signed_in.post("/api/v2/auth/refresh")
    assert refreshed.status_code == 200
    assert _get(refreshed.json()["data"]["access"]).status_code == 200
    logged_out = signed_in.post("/api/v2/auth/logout")
    assert logged_out.status_code == 204
    assert logged_out.cookies[settings.REFRESH_COOKIE_NAME]["path"] == "/api/v2/auth/"


def test_refresh_cookie_is_secure_outside_debug():
    """Production settings (DEBUG off) mark the cookie Secure; evaluated in a fresh process."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "DEBUG": "false",
        "NEXUS_TESTING": "false",
        "SECRET_KEY": "a-production-like-secret-key-for-this-check-only",
        "ALLOWED_HOSTS": "api.example.com",
        "DJANGO_SETTINGS_MODULE": "nexus.settings",
    }
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.REFRESH_COOKIE_SECURE, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip().splitlines()[-1] == "True True True", result.stderr[-2000:]


def test_refresh_without_cookie_is_401(client):
    _assert_401(client.post("/api/v1/auth/refresh"))


def test_refresh_refused_for_removed_user(signed_in, world):
    signed_in.post("/api/v1/auth/token", **_csrf(signed_in))
    world.member_a.is_active = False
    world.member_a.save()
    _assert_401(signed_in.post("/api/v1/auth/refresh"))


def test_logout_blacklists_refresh_token_and_clears_cookie(signed_in):
    signed_in.post("/api/v1/auth/token", **_csrf(signed_in))
    refresh = signed_in.cookies[settings.REFRESH_COOKIE_NAME].value

    response = signed_in.post("/api/v1/auth/logout")
    assert response.status_code == 204
    assert response.cookies[settings.REFRESH_COOKIE_NAME].value == ""

    again = APIClient()
    again.cookies[settings.REFRESH_COOKIE_NAME] = refresh
    _assert_401(again.post("/api/v1/auth/refresh"))
    # Logging out twice is harmless.
    assert again.post("/api/v1/auth/logout").status_code == 204
