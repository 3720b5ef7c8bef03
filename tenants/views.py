"""Pages for signed-in people. The tenant middleware has already chosen the schema."""

from __future__ import annotations

from allauth.socialaccount.providers.google import views as google_views
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def home(request):
    return render(
        request,
        "tenants/home.html",
        {"organisation": request.tenant, "user": request.user},
    )


def _google_not_configured(request):
    return render(
        request,
        "tenants/signin_refused.html",
        {
            "reason": (
                "Google sign-in is not configured on this server (GOOGLE_CLIENT_ID and "
                "GOOGLE_CLIENT_SECRET are unset). Sign in with your email and password instead."
            )
        },
        status=503,
    )


def google_login(request):
    """GET /auth/login: start Google sign-in (allauth's view, PKCE and state included)."""
    if not settings.GOOGLE_CLIENT_ID:
        return _google_not_configured(request)
    return google_views.oauth2_login(request)


def google_callback(request):
    """GET /auth/callback: Google redirects here; allauth exchanges the code, and
    tenants.adapters places a new user in their organisation."""
    if not settings.GOOGLE_CLIENT_ID:
        return _google_not_configured(request)
    return google_views.oauth2_callback(request)
