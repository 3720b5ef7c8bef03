"""Pages: members, API access, sign out everywhere, and the sign-in entry points (Google, and
the operators' way into the admin)."""

from __future__ import annotations

from urllib.parse import urlencode

from allauth.socialaccount.providers.google import views as google_views
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from nexus.api.errors import AppError
from nexus.pages import confirmation_page, confirmed, org_page, page_context
from tenants import selectors, services
from tenants.models import Role
from tenants.services.invitations import INVITATION_SESSION_KEY
from tenants.team_views import members_extra


@org_page
def members_page(request):
    members = selectors.member_list(org=request.tenant).order_by("email")
    return render(
        request,
        "tenants/members.html",
        page_context(request, nav="members", members=members, roles=Role, **members_extra(request)),
    )


@require_POST
@org_page(admin=True)
def member_update(request, member_id):
    # Looked up before anything else, so another organisation's member is the 404 page for
    # every action, as for an id that exists nowhere (not a redirect with a message).
    member = selectors.member_get(org=request.tenant, member_id=member_id)
    if request.POST.get("action") == "remove" and not confirmed(request, "remove"):
        return confirmation_page(
            request,
            title="Remove a member",
            question=f"Remove {member.email} from {request.tenant.name}? They lose access at once.",
            action="remove",
            button=f"Remove {member.email}",
            cancel_url="/members",
        )
    try:
        if request.POST.get("action") == "remove":
            services.member_remove(org=request.tenant, member_id=member_id)
            messages.success(request, "Member removed.")
        else:
            member = services.member_change_role(
                org=request.tenant, member_id=member_id, role=request.POST.get("role", "")
            )
            messages.success(request, f"{member.email} is now {member.get_role_display().lower()}.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect("/members")


@org_page
def api_access_page(request):
    return render(
        request,
        "tenants/api_access.html",
        page_context(request, nav="api", base_url=request.build_absolute_uri("/").rstrip("/")),
    )


@require_POST
def sign_out_everywhere(request):
    """POST /account/sign-out-everywhere: end every session and API token of the signed-in
    user, this browser's session included. Asks first unless the form says it was confirmed."""
    if not request.user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    if not confirmed(request, "sign-out-everywhere"):
        return confirmation_page(
            request,
            title="Sign out everywhere",
            question=(
                "Sign out of every browser and revoke every API token of yours, here too? "
                "Scripts using your tokens stop working at once."
            ),
            action="sign-out-everywhere",
            button="Sign out everywhere",
            cancel_url="/api-access",
        )
    services.user_sign_out_everywhere(user=request.user)
    logout(request)
    messages.success(request, "Signed out everywhere: every session and API token of yours has ended.")
    return redirect(settings.LOGIN_URL)


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
    if not request.GET.get("next", "").startswith("/invitations/"):
        # A sign-in that did not start from an invitation's page uses no invitation.
        request.session.pop(INVITATION_SESSION_KEY, None)
    return google_views.oauth2_login(request)


def google_callback(request):
    """GET /auth/callback: Google redirects here; allauth exchanges the code, and
    tenants.adapters places a new user in their organisation."""
    if not settings.GOOGLE_CLIENT_ID:
        return _google_not_configured(request)
    return google_views.oauth2_callback(request)


@require_GET
def operator_login(request):
    """GET /admin/login/: operators sign in on the same allauth form as everyone else, so
    its failed-login throttle (ACCOUNT_RATE_LIMITS) guards the admin too; Django's own
    admin form has no throttle at all."""
    if request.user.is_authenticated and not (request.user.is_active and request.user.is_staff):
        # Sending a signed-in non-operator to the sign-in form would bounce them straight
        # back to /admin/ and here again.
        return render(
            request,
            "403.html",
            {"reason": "The admin is for operators; your account is not an operator account."},
            status=403,
        )
    target = request.GET.get("next", "")
    if not target or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/admin/"
    return redirect(f"{settings.LOGIN_URL}?{urlencode({'next': target})}")
