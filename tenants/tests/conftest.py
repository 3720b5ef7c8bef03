"""Fixtures of the tenants tests.

`google`: Google sign-in through allauth's real views. Google's token endpoint is a local
stand-in: allauth makes its real HTTP request to it and decodes the id_token it returns,
with the `hd` claim Google adds for a Google Workspace account when the test gives one."""

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from allauth.socialaccount.providers.google.views import GoogleOAuth2Adapter

from nexus.tests.stub_server import StubServer

GOOGLE_CLIENT_ID = "test-client-id.apps.googleusercontent.com"


@pytest.fixture
def google(settings, monkeypatch):
    """google(client, email, ...) signs `client` in as that Google account and returns the
    answer of the callback (allauth's redirect, or the page refusing the sign-in)."""
    settings.GOOGLE_CLIENT_ID = GOOGLE_CLIENT_ID
    settings.SOCIALACCOUNT_PROVIDERS = {
        **settings.SOCIALACCOUNT_PROVIDERS,
        "google": {
            **settings.SOCIALACCOUNT_PROVIDERS["google"],
            "APPS": [{"client_id": GOOGLE_CLIENT_ID, "secret": "test-secret", "key": ""}],
        },
    }
    identity = {}

    def token_endpoint(request):
        form = request.form()
        assert form["grant_type"] == "authorization_code"
        assert form["code"] == "auth-code"
        assert form["code_verifier"]  # PKCE
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": GOOGLE_CLIENT_ID,
            "sub": identity["sub"],
            "email": identity["email"],
            "email_verified": identity["verified"],
            "name": identity["name"],
            "iat": now,
            "exp": now + 3600,
        }
        if identity["hd"] is not None:
            claims["hd"] = identity["hd"]
        id_token = jwt.encode(
            claims,
            "google-stand-in-signing-key-0123456789abcdef",
            algorithm="HS256",
        )
        return (
            200,
            {},
            {
                "access_token": "ya29.stand-in",
                "expires_in": 3599,
                "token_type": "Bearer",
                "scope": "openid email profile",
                "id_token": id_token,
            },
        )

    with StubServer() as server:
        server.route("POST", "/token", token_endpoint)
        monkeypatch.setattr(GoogleOAuth2Adapter, "access_token_url", f"{server.url}/token")

        def sign_in(client, email, *, verified=True, name="Test Person", hd=None, start="/auth/login"):
            """Sign in as a Google account; `hd` is the Workspace domain Google vouches for
            (None: a consumer account, as Google sends no `hd` then). `start` is where the
            sign-in begins (a page's link to /auth/login, with its `next`)."""
            identity.update(sub=str(uuid.uuid4().int)[:21], email=email, verified=verified, name=name, hd=hd)
            started = client.get(start)
            assert started.status_code == 302
            location = urlsplit(started["Location"])
            assert location.netloc == "accounts.google.com"
            query = parse_qs(location.query)
            assert query["redirect_uri"] == ["http://testserver/auth/callback"]
            return client.get("/auth/callback", {"code": "auth-code", "state": query["state"][0]})

        yield sign_in
