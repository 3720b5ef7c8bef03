"""Who may call what. Tenant views need a caller who belongs to the organisation the
request runs in: a token without an organisation (an operator, say) never reaches a
tenant view, so no view ever runs in the public schema by mistake."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from tenants.models import Role


class IsOrganisationMember(BasePermission):
    message = "This endpoint needs a member of an organisation."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        tenant = getattr(request._request, "tenant", None)
        return tenant is not None and user.organisation_id == tenant.id


class IsOrganisationAdmin(IsOrganisationMember):
    message = "Only an organisation admin can do this."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.role == Role.ADMIN


class AdminForWrites(IsOrganisationMember):
    """Members read; admins also create, change and delete."""

    message = "Only an organisation admin can change this."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        return request.method in ("GET", "HEAD", "OPTIONS") or request.user.role == Role.ADMIN
