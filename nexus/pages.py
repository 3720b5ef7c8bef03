"""What every page for people shares: a signed-in member of an active organisation, the
organisation in the template context, and HTMX-aware redirects to sign-in."""

from __future__ import annotations

import functools
from urllib.parse import quote

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, render

from tenants.models import Role


def is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _to_sign_in(request):
    target = f"{settings.LOGIN_URL}?next={quote(request.get_full_path())}"
    if is_htmx(request):
        # A login form swapped into a fragment would be worse than useless: go to it.
        response = HttpResponse(status=200)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


def org_page(view=None, *, admin: bool = False):
    """Decorate a page view: signed in, in an active organisation (and an admin when
    `admin`). The view receives the organisation as `request.tenant`."""

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
            return func(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def page_context(request, **extra) -> dict:
    return {
        "organisation": request.tenant,
        "is_admin": request.user.role == Role.ADMIN,
        **extra,
    }
