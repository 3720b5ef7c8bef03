"""Reads of organisations and users. Every query over users takes the organisation: there
is no path from one organisation's caller to another organisation's user rows."""

from __future__ import annotations

import uuid

from django.db.models import Count, Q, QuerySet
from django_tenants.utils import get_public_schema_name

from nexus.access import access_by_id
from tenants.models import Organisation, Role, User


def member_list(*, org: Organisation, search: str = "", roles: list[str] | None = None) -> QuerySet[User]:
    members = User.objects.filter(organisation=org, is_active=True)
    if roles:
        members = members.filter(role__in=roles)
    if search:
        members = members.filter(Q(email__icontains=search) | Q(name__icontains=search))
    return members


def member_get(*, org: Organisation, member_id: uuid.UUID | str) -> User:
    """The member of `org` with this id. Unknown, inactive and another organisation's
    users are the same 404, so the answer says nothing about who exists elsewhere."""
    return access_by_id(member_list(org=org), member_id, not_found="No such member in this organisation.")


def organisation_admin_count(*, org: Organisation) -> int:
    return member_list(org=org, roles=[Role.ADMIN]).count()


def organisation_by_slug(*, slug: str) -> Organisation | None:
    return Organisation.objects.filter(slug=slug).first()


def organisation_by_email_domain(*, domain: str) -> Organisation | None:
    return Organisation.objects.filter(email_domain=domain.lower()).first()


def organisations_with_member_counts() -> QuerySet[Organisation]:
    return Organisation.objects.annotate(member_count=Count("users", filter=Q(users__is_active=True)))


def user_by_email(*, email: str) -> User | None:
    from tenants.managers import normalize_email_address

    return User.objects.select_related("organisation").filter(email=normalize_email_address(email)).first()


def organisations_active() -> QuerySet[Organisation]:
    """Every organisation whose work runs: active, and a tenant (not the public schema)."""
    return Organisation.objects.filter(is_active=True).exclude(schema_name=get_public_schema_name())
