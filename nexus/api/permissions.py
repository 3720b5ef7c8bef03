"""Who may call what. Tenant views need a caller who belongs to the organisation the
request runs in: a token without an organisation (an operator, say) never reaches a
tenant view, so no view ever runs in the public schema by mistake.

People are judged by their role; API keys by their scopes, never by a role
(docs/specs/team-access.md). Each view names the scope each method needs in `key_scopes`
({"GET": "jobs:read", "POST": "jobs:write"}); a method it does not name, or a view with no
`key_scopes`, refuses every key: what was not opened to keys stays closed to them."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from nexus.api.errors import Forbidden
from tenants.models import Role

_READS = ("GET", "HEAD", "OPTIONS")


def api_key_of(request):
    """The API key a request authenticated with, or None (a person's token or session)."""
    return getattr(getattr(request, "_request", request), "api_key", None)


def scope_required(view, method: str) -> str | None:
    scopes = getattr(view, "key_scopes", None) or {}
    return scopes.get("GET" if method in _READS else method)


def _key_may_call(key, view, method: str) -> bool:
    scope = scope_required(view, method)
    if scope is None:
        raise Forbidden(
            "API keys cannot call this endpoint; it needs a person signed in.",
            details={"reason": "person_only"},
        )
    if scope not in key.scopes:
        raise Forbidden(
            f"This API key lacks the scope {scope}.",
            details={"required_scope": scope, "key_scopes": sorted(key.scopes)},
        )
    return True


class IsOrganisationMember(BasePermission):
    message = "This endpoint needs a member of an organisation."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        tenant = getattr(request._request, "tenant", None)
        if tenant is None or user.organisation_id != tenant.id:
            return False
        key = api_key_of(request)
        if key is not None:
            return _key_may_call(key, view, request.method)
        return self.person_may(request, view)

    def person_may(self, request, view) -> bool:
        return True


class IsOrganisationAdmin(IsOrganisationMember):
    message = "Only an organisation admin can do this."

    def person_may(self, request, view) -> bool:
        return request.user.role == Role.ADMIN


class AdminForWrites(IsOrganisationMember):
    """Members read; admins also create, change and delete."""

    message = "Only an organisation admin can change this."

    def person_may(self, request, view) -> bool:
        return request.method in _READS or request.user.role == Role.ADMIN
