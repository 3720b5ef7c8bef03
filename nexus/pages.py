"""What every page for people shares: a signed-in member of an active organisation, the
organisation in the template context, and HTMX-aware redirects to sign-in."""

from __future__ import annotations

import functools
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from nexus.api.errors import NotFound
from tenants.models import Role


def is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _local_path(request, current: str) -> str:
    """`current` (a full URL the client named) as a local path, when it is on this very host
    and scheme; otherwise the dashboard."""
    if not current or not url_has_allowed_host_and_scheme(
        current, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return "/"
    parts = urlsplit(current)
    if not parts.netloc:
        return "/"
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _return_to(request) -> str:
    """Where to come back to after signing in again.

    An HTMX request's own URL is a fragment (/partials/balance, /jobs/<id>/result), and a
    form's is an action that only takes POST (/jobs/submit): coming back to either would
    show an unstyled scrap or a 405. So: the page the fragment belonged to (HX-Current-URL),
    the page the form was on (Referer), else the URL itself."""
    if is_htmx(request):
        return _local_path(request, request.headers.get("HX-Current-URL", ""))
    if request.method not in ("GET", "HEAD"):
        return _local_path(request, request.headers.get("Referer", ""))
    return request.get_full_path()


def _to_sign_in(request):
    target = f"{settings.LOGIN_URL}?next={quote(_return_to(request))}"
    if is_htmx(request):
        # A login form swapped into a fragment would be worse than useless: go to it.
        response = HttpResponse(status=200)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


def org_page(view=None, *, admin: bool = False):
    """Decorate a page view: signed in, in an active organisation (and an admin when
    `admin`). The view receives the organisation as `request.tenant`. A NotFound from a
    selector (no such object, or another organisation's) is the 404 page, not a 500."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return _to_sign_in(request)
            if request.tenant is None or request.user.organisation_id != request.tenant.id:
                return render(request, "pages/no_organisation.html", status=403)
            if admin and request.user.role != Role.ADMIN:
                return render(
                    request,
                    "403.html",
                    {"reason": "Only an admin of your organisation can do this."},
                    status=403,
                )
            try:
                return func(request, *args, **kwargs)
            except NotFound as exc:
                return render(request, "404.html", {"reason": exc.message}, status=404)

        return wrapper

    return decorate(view) if view is not None else decorate


def page_context(request, **extra) -> dict:
    return {
        "organisation": request.tenant,
        "is_admin": request.user.role == Role.ADMIN,
        **extra,
    }


def confirmed(request, action: str) -> bool:
    """Whether a destructive POST says it was confirmed (app.js adds the field after the
    browser's dialog; the confirmation page carries it without JavaScript)."""
    return request.POST.get("confirmed") == action


def confirmation_page(request, *, title: str, question: str, action: str, button: str, cancel_url: str):
    """Ask before doing `action`: a page whose form posts the same request again, confirmed."""
    return render(
        request,
        "pages/confirm.html",
        page_context(
            request,
            title=title,
            question=question,
            action=action,
            button=button,
            cancel_url=cancel_url,
            post_url=request.path,
        ),
    )
