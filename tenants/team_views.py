"""Pages for team access (docs/specs/team-access.md): API keys, invitations (sending them
from the members page, and the page their link opens), the organisation's domain setting,
leaving, and the audit log."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from auditlog.actions import ACTIONS, FAMILIES, FILTERS
from auditlog.csv_export import audit_log_download
from auditlog.selectors import audit_events
from nexus.api.errors import AppError, field_error
from nexus.pages import confirmation_page, confirmed, org_page, page_context
from tenants import services
from tenants.apikeys import SCOPES
from tenants.models import Invitation, Role, User
from tenants.services import invitations, keys

PAGE_SIZE = 50


# --- API keys -------------------------------------------------------------------------------


@never_cache  # it may show a new key's secret: no browser or proxy keeps a copy
@org_page(admin=True)
def api_keys_page(request):
    return render(
        request,
        "tenants/api_keys.html",
        page_context(
            request,
            nav="api",
            keys=keys.api_key_list(org=request.tenant),
            scopes=SCOPES,
            max_days=settings.API_KEY_MAX_DAYS,
            new_key=request.session.pop("new_api_key", None),
        ),
    )


def _expiry(raw: str):
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        raise field_error("expires_in_days", "The expiry must be a whole number of days.") from None
    if days < 1:
        raise field_error("expires_in_days", "The expiry must be at least one day.")
    # Refused before the date is computed: a number of days past the calendar's end would
    # overflow it.
    if days > settings.API_KEY_MAX_DAYS:
        raise field_error(
            "expires_in_days", f"A key may expire at most {settings.API_KEY_MAX_DAYS} days ahead."
        )
    return timezone.now() + timedelta(days=days)


@require_POST
@org_page(admin=True)
def api_key_create(request):
    try:
        key, secret = keys.api_key_create(
            org=request.tenant,
            created_by=request.user,
            name=request.POST.get("name", ""),
            scopes=request.POST.getlist("scopes"),
            expires_at=_expiry(request.POST.get("expires_in_days", "")),
        )
    except AppError as exc:
        messages.error(request, exc.message)
        return redirect("/api-keys")
    # Shown once, on the next page load, then gone from the session.
    request.session["new_api_key"] = {"name": key.name, "secret": secret}
    messages.success(request, f"API key {key.name} created. Copy it now: it is not shown again.")
    return redirect("/api-keys")


@require_POST
@org_page(admin=True)
def api_key_revoke(request, key_id):
    key = keys.api_key_get(org=request.tenant, key_id=key_id)
    if not confirmed(request, "revoke"):
        return confirmation_page(
            request,
            title="Revoke an API key",
            question=f"Revoke {key.name} ({key.prefix})? Programs using it are refused from the next "
            "request.",
            action="revoke",
            button=f"Revoke {key.name}",
            cancel_url="/api-keys",
        )
    keys.api_key_revoke(org=request.tenant, key_id=key.pk)
    messages.success(request, f"API key {key.name} revoked.")
    return redirect("/api-keys")


# --- Members: invitations, the domain setting, leaving ------------------------------------------


def members_extra(request) -> dict:
    """What the members page shows beyond the members: for admins, the pending invitations
    and the domain setting."""
    if request.user.role != Role.ADMIN:
        return {}
    pending = invitations.invitation_list(org=request.tenant, statuses=["pending", "expired"])
    return {"invitations": pending[:200], "invitation_days": settings.INVITATION_TTL_DAYS}


@require_POST
@org_page(admin=True)
def invitation_create(request):
    try:
        invitation = invitations.invitation_create(
            org=request.tenant,
            invited_by=request.user,
            email=request.POST.get("email", ""),
            role=request.POST.get("role", Role.MEMBER),
        )
    except AppError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Invitation sent to {invitation.email}.")
    return redirect("/members")


@require_POST
@org_page(admin=True)
def invitation_action(request, invitation_id):
    invitation = invitations.invitation_get(org=request.tenant, invitation_id=invitation_id)
    action = request.POST.get("action")
    try:
        if action == "resend":
            invitations.invitation_resend(org=request.tenant, invitation_id=invitation.pk)
            messages.success(
                request, f"Invitation to {invitation.email} sent again; older links stop working."
            )
        elif action == "revoke":
            invitations.invitation_revoke(org=request.tenant, invitation_id=invitation.pk)
            messages.success(request, f"Invitation to {invitation.email} withdrawn.")
        else:
            messages.error(request, "Unknown action.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect("/members")


@require_POST
@org_page(admin=True)
def organisation_settings(request):
    services.organisation_update(
        org=request.tenant, domain_auto_join=request.POST.get("domain_auto_join") == "on"
    )
    messages.success(request, "Settings saved.")
    return redirect("/members")


@require_POST
@org_page
def leave(request):
    organisation = request.tenant
    if not confirmed(request, "leave"):
        return confirmation_page(
            request,
            title="Leave the organisation",
            question=f"Leave {organisation.name}? You lose access to it at once, and the API keys you "
            "created are revoked.",
            action="leave",
            button=f"Leave {organisation.name}",
            cancel_url="/members",
        )
    try:
        services.member_leave(user=request.user)
    except AppError as exc:
        messages.error(request, exc.message)
        return redirect("/members")
    # Leaving ended every session of the user; this one goes too, with a word on what next.
    return render(request, "tenants/left.html", {"organisation_name": organisation.name})


# --- Accepting an invitation --------------------------------------------------------------------


def _invitation_context(request, invitation: Invitation) -> dict:
    user = request.user if request.user.is_authenticated else None
    has_account = user is not None or invitations.account_can_sign_in(invitation.email)
    return {
        "invitation": invitation,
        "organisation": None,  # the page is outside any organisation's navigation
        "invited_to": invitation.organisation,
        "signed_in_as": user,
        "has_account": has_account,
        "google_enabled": bool(settings.GOOGLE_CLIENT_ID),
        "token": request.resolver_match.kwargs["token"],
    }


@require_http_methods(["GET", "POST"])
def invitation_page(request, token):
    """GET /invitations/<token>: what the emailed link opens. POST joins (signed in as the
    invited address) or creates the account with a password (no account yet)."""
    found = invitations.invitation_from_token(token)
    if isinstance(found, invitations.LinkProblem):
        status = 404 if found.reason == "invalid" else 410
        return render(request, "tenants/invitation.html", {"problem": found}, status=status)
    context = _invitation_context(request, found)
    if request.method == "GET":
        # The invited address signed in, but a member here already or of another organisation:
        # said at once, rather than after pressing a Join that cannot work.
        refusal = (
            invitations.invitation_refusal(invitation=found, user=request.user)
            if request.user.is_authenticated and request.user.email == found.email
            else None
        )
        if refusal is not None:
            context["error"] = refusal.message
            return render(request, "tenants/invitation.html", context, status=409)
        return render(request, "tenants/invitation.html", context)
    action = request.POST.get("action")
    try:
        if action == "join" and request.user.is_authenticated:
            invitations.invitation_accept(invitation_id=found.pk, nonce=found.nonce, user=request.user)
        elif action == "password" and not context["has_account"]:
            user = _account_with_password(request, found)
            if user is None:
                return render(request, "tenants/invitation.html", context, status=422)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        else:
            return render(request, "tenants/invitation.html", context, status=400)
    except AppError as exc:
        context["error"] = exc.message
        return render(request, "tenants/invitation.html", context, status=409)
    messages.success(request, f"Welcome to {found.organisation.name}.")
    return redirect("/")


def _account_with_password(request, invitation: Invitation) -> User | None:
    """Create the invited address's account with the password given, and accept, in one
    transaction; None (with the reasons on the request's messages) when the password is
    refused."""
    password = request.POST.get("password", "")
    if password != request.POST.get("password_again", ""):
        messages.error(request, "The two passwords differ.")
        return None
    name = request.POST.get("name", "").strip()[:150]
    try:
        validate_password(password, User(email=invitation.email, name=name))
    except DjangoValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return None
    return invitations.invitation_accept_with_password(invitation=invitation, password=password, name=name)


@require_POST
def invitation_google(request, token):
    """POST /invitations/<token>/google (the page's "Continue with Google", CSRF-protected,
    so no other site can plant an invitation in a visitor's session): remember the
    invitation through Google's sign-in, then come back to its page."""
    found = invitations.invitation_from_token(token)
    if isinstance(found, invitations.LinkProblem):
        return redirect(f"/invitations/{token}")
    request.session[invitations.INVITATION_SESSION_KEY] = token
    return redirect(f"/auth/login?process=login&next=/invitations/{token}")


# --- The audit log ------------------------------------------------------------------------------


def _printable(value: str) -> str:
    """A filter's text without control characters (which no label holds, and which
    PostgreSQL refuses in a query: NUL)."""
    return re.sub(r"[\x00-\x1f\x7f]", "", value).strip()


def _day(request, name: str) -> date | None:
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None
    try:
        day = parse_date(raw)
    except ValueError:
        day = None
    if day is None:
        messages.error(request, f"'{name}' must be a date (YYYY-MM-DD); it was ignored.")
    return day


def _audit_log_filters(request) -> dict:
    action = request.GET.get("action", "").strip()
    start, end = _day(request, "from"), _day(request, "to")
    if start and end and start > end:
        messages.error(request, "'from' is after 'to': the dates were ignored.")
        start = end = None
    return {
        "actor": _printable(request.GET.get("actor", ""))[:300],
        "action": action if action in FILTERS else "",
        "target": _printable(request.GET.get("target", ""))[:300],
        "from": start.isoformat() if start else "",
        "to": end.isoformat() if end else "",
    }


def _audit_log_events(request):
    filters = _audit_log_filters(request)
    events = audit_events(
        organisation_id=request.tenant.pk,
        actor=filters["actor"],
        actions=[filters["action"]] if filters["action"] else None,
        target=filters["target"],
    )
    if filters["from"]:
        events = events.filter(
            created_at__gte=datetime.combine(date.fromisoformat(filters["from"]), time.min, UTC)
        )
    if filters["to"]:
        events = events.filter(
            created_at__lte=datetime.combine(date.fromisoformat(filters["to"]), time.max, UTC)
        )
    return filters, events


@org_page(admin=True)
def audit_log_page(request):
    filters, events = _audit_log_events(request)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({key: value for key, value in filters.items() if value})
    return render(
        request,
        "tenants/audit_log.html",
        page_context(
            request,
            nav="audit-log",
            page=page,
            filters=filters,
            query=query,
            actions=ACTIONS,
            families=FAMILIES,
            retention_days=settings.AUDIT_LOG_RETENTION_DAYS,
        ),
    )


@org_page(admin=True)
def audit_log_csv_download(request):
    _filters, events = _audit_log_events(request)
    return audit_log_download(events, name=request.tenant.slug)
