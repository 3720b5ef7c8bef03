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


def _page_behind_htmx(request) -> str:
    """The page an HTMX request was made from (its HX-Current-URL), as a local path.

    An HTMX request's own URL is a fragment (/partials/balance, /jobs/<id>/result): coming
    back to it after signing in would show an unstyled scrap. The header is the client's
    word, so only a URL on this very host and scheme is used; anything else is the dashboard.
    """
    current = request.headers.get("HX-Current-URL", "")
    if not current or not url_has_allowed_host_and_scheme(
        current, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return "/"
    parts = urlsplit(current)
    if not parts.netloc:
        return "/"
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _to_sign_in(request):
    if is_htmx(request):
        # A login form swapped into a fragment would be worse than useless: go to it, and
        # come back to the page the fragment belonged to.
        response = HttpResponse(status=200)
        response["HX-Redirect"] = f"{settings.LOGIN_URL}?next={quote(_page_behind_htmx(request))}"
        return response
    return redirect(f"{settings.LOGIN_URL}?next={quote(request.get_full_path())}")


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
