"""Every write to organisations, users and API tokens.

Runs in the public schema (organisations and users live there); every query over users
takes the organisation it is about.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address

import structlog
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from nexus.api.errors import Conflict, LimitReached, Unauthorized, ValidationFailed
from tenants.authentication import refresh_token_for
from tenants.freemail import is_free_mail_domain
from tenants.managers import normalize_email_address
from tenants.models import Organisation, Plan, Role, User
from tenants.selectors import member_get, member_list

log = structlog.get_logger(__name__)

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={"fields": {field: [message]}})


def _clean_domain(domain: str) -> str:
    cleaned = domain.strip().lower().lstrip("@")
    if not _DOMAIN_RE.match(cleaned):
        raise _field_error("domain", f"{domain!r} is not a valid email domain.")
    return cleaned


def _schema_for(slug: str) -> str:
    return f"org_{slug.replace('-', '_')}"


def _unique_slug(name: str) -> str:
    """A slug of [a-z0-9-] whose schema name is free too ("a_b" and "a-b" would both be
    schema org_a_b, so underscores become hyphens first)."""
    base = slugify(name).replace("_", "-")[:40].strip("-") or "org"
    slug = base
    while (
        Organisation.objects.filter(slug=slug).exists()
        or Organisation.objects.filter(schema_name__iexact=_schema_for(slug)).exists()
    ):
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


# --- Organisations ----------------------------------------------------------------------


def organisation_create(*, name: str, email_domain: str | None = None, plan: str = Plan.FREE) -> Organisation:
    """Create an organisation and its schema (cloned from the template).

    Fails with ValidationFailed for an empty or over-long name, an invalid or free-mail
    domain, or an unknown plan; with Conflict when the domain already has an organisation.
    """
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise _field_error("name", "An organisation name of 1 to 100 characters is required.")
    if plan not in Plan.values:
        raise _field_error("plan", f"Unknown plan {plan!r}; use one of {Plan.values}.")
    domain = None
    if email_domain:
        domain = _clean_domain(email_domain)
        if is_free_mail_domain(domain):
            raise _field_error(
                "domain",
                f"{domain} is a free-mail domain; its users each get a personal organisation.",
            )
        if Organisation.objects.filter(email_domain=domain).exists():
            raise Conflict(f"An organisation for {domain} already exists.")

    connection.set_schema_to_public()
    slug = _unique_slug(name)
    try:
        with transaction.atomic():
            org = Organisation(
                name=name,
                slug=slug,
                schema_name=_schema_for(slug),
                email_domain=domain,
                plan=plan,
            )
            org.save(verbosity=0)
    except (IntegrityError, DjangoValidationError) as exc:
        raise Conflict("An organisation with that domain or name was created at the same time.") from exc
    log.info("organisation.created", org_id=str(org.id), slug=org.slug, personal=org.is_personal)
    return org


# --- Users --------------------------------------------------------------------------------


def user_create(
    *,
    email: str,
    organisation: Organisation,
    role: str = Role.MEMBER,
    name: str = "",
    password: str | None = None,
) -> User:
    """Create an active user in `organisation`. Fails with ValidationFailed for a bad email,
    role or (when given) a password the validators refuse; Conflict if the email is taken."""
    email = normalize_email_address(email)
    try:
        validate_email(email)
    except DjangoValidationError:
        raise _field_error("email", f"{email!r} is not a valid email address.") from None
    if role not in Role.values:
        raise _field_error("role", f"Unknown role {role!r}; use one of {Role.values}.")
    if password is not None:
        try:
            validate_password(password, User(email=email))
        except DjangoValidationError as exc:
            raise ValidationFailed(
                "The password is too weak.", details={"fields": {"password": exc.messages}}
            ) from None
    if User.objects.filter(email=email).exists():
        raise Conflict(f"A user with email {email} already exists.")
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email, password, organisation=organisation, role=role, name=name.strip()
            )
    except IntegrityError as exc:
        raise Conflict(f"A user with email {email} already exists.") from exc
    log.info("user.created", user_id=str(user.pk), org_id=str(organisation.pk), role=role)
    return user


def onboarding_organisation_for(*, email: str, display_name: str = "") -> tuple[Organisation, str]:
    """The organisation and role a first-time Google user gets.

    A company domain's first user creates its organisation and becomes its admin; later
    users of the domain join it as members. A free-mail address gets a personal
    organisation of its own. Must be called inside the transaction that saves the user:
    an advisory lock on the domain makes two simultaneous first sign-ins of one company
    produce one organisation, not two.
    """
    email = normalize_email_address(email)
    local_part, _, domain = email.rpartition("@")
    if not local_part or not domain:
        raise _field_error("email", f"{email!r} is not a valid email address.")
    if is_free_mail_domain(domain):
        org = organisation_create(name=f"{display_name.strip() or local_part} (personal)")
        return org, Role.ADMIN

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"onboard:{domain}"])
    org = Organisation.objects.filter(email_domain=domain).first()
    if org is not None:
        return org, Role.MEMBER
    company = domain.split(".")[0].replace("-", " ").title() or domain
    return organisation_create(name=company, email_domain=domain), Role.ADMIN


# --- Members --------------------------------------------------------------------------------


def _lock_admins(org: Organisation) -> list[User]:
    # Locking every admin row serialises concurrent demotions/removals in one organisation,
    # so two admins demoting each other at once cannot leave it with none.
    return list(member_list(org=org, roles=[Role.ADMIN]).select_for_update().order_by("pk"))


def _refuse_last_admin(org: Organisation, member: User, action: str) -> None:
    admins = _lock_admins(org)
    if member.role == Role.ADMIN and len(admins) <= 1:
        raise Conflict(
            f"Cannot {action} the last admin of the organisation; make someone else an admin first.",
            details={"reason": "last_admin"},
        )


@transaction.atomic
def member_change_role(*, org: Organisation, member_id: uuid.UUID | str, role: str) -> User:
    if role not in Role.values:
        raise _field_error("role", f"Unknown role {role!r}; use one of {Role.values}.")
    member = member_get(org=org, member_id=member_id)
    if member.role == role:
        return member
    if role == Role.MEMBER:
        _refuse_last_admin(org, member, "demote")
    member.role = role
    member.save(update_fields=["role"])
    log.info("member.role_changed", member_id=str(member.pk), role=role)
    return member


@transaction.atomic
def member_remove(*, org: Organisation, member_id: uuid.UUID | str) -> None:
    """Remove a member from the organisation: the account is deactivated and detached,
    and every refresh token it holds is revoked (access tokens stop working at once,
    since each request checks the user is still in the organisation)."""
    member = member_get(org=org, member_id=member_id)
    _refuse_last_admin(org, member, "remove")
    member.organisation = None
    member.role = Role.MEMBER
    member.is_active = False
    member.save(update_fields=["organisation", "role", "is_active"])
    tokens_revoke_all(user=member)
    log.info("member.removed", member_id=str(member.pk))


# --- API tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    access_expires_at: datetime


def token_pair_issue(*, user: User) -> TokenPair:
    if not user.is_active or user.organisation_id is None:
        raise Unauthorized("Only an active member of an organisation can hold an API token.")
    if not user.organisation.is_active:
        raise Unauthorized("This organisation is deactivated.")
    refresh = refresh_token_for(user)
    access = refresh.access_token
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        access_expires_at=datetime.fromtimestamp(access["exp"], tz=UTC),
    )


@transaction.atomic
def token_pair_refresh(*, raw_refresh: str) -> TokenPair:
    """Exchange a refresh token for a new pair; the old refresh token is blacklisted.

    Unauthorized when the token is missing, invalid, expired, already used (a replay:
    refresh tokens are single-use), or its user is inactive or no longer in its
    organisation. The new access token carries the user's current role.
    """
    if not raw_refresh:
        raise Unauthorized("No refresh token was sent.")
    try:
        refresh = RefreshToken(raw_refresh)
    except TokenError:
        raise Unauthorized("The refresh token is invalid, expired or already used.") from None
    outstanding = OutstandingToken.objects.select_for_update(of=("self",)).filter(jti=refresh["jti"]).first()
    if outstanding is None:
        raise Unauthorized("The refresh token is invalid, expired or already used.")
    _, newly_blacklisted = BlacklistedToken.objects.get_or_create(token=outstanding)
    if not newly_blacklisted:
        raise Unauthorized("The refresh token is invalid, expired or already used.")
    user = User.objects.select_related("organisation").filter(pk=refresh.get("user_id")).first()
    if user is None or not user.is_active or str(user.organisation_id) != str(refresh.get("org")):
        raise Unauthorized("The user of this token is inactive or no longer in its organisation.")
    return token_pair_issue(user=user)


def token_revoke(*, raw_refresh: str) -> None:
    """Blacklist a refresh token (logout). An invalid or already revoked token is ignored:
    logging out twice is not an error."""
    if not raw_refresh:
        return
    try:
        RefreshToken(raw_refresh).blacklist()
    except TokenError:
        return


def tokens_revoke_all(*, user: User) -> int:
    outstanding = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now()).exclude(
        blacklistedtoken__isnull=False
    )
    revoked = 0
    for token in outstanding:
        BlacklistedToken.objects.get_or_create(token=token)
        revoked += 1
    return revoked


def user_record_login(*, user: User, ip: str | None) -> None:
    """Remember where a user last signed in from (shown to operators in the admin)."""
    try:
        cleaned = str(ip_address(ip)) if ip else None
    except ValueError:
        cleaned = None
    User.objects.filter(pk=user.pk).update(last_login_ip=cleaned)


# --- Fairness caps ------------------------------------------------------------------------------

CAP_DEFAULTS = {
    "max_sources": "ORG_MAX_SOURCES",
    "max_webhook_endpoints": "ORG_MAX_WEBHOOK_ENDPOINTS",
    "max_concurrent_runs": "ORG_MAX_CONCURRENT_RUNS",
}


def organisation_cap(*, cap: str, schema_name: str | None = None) -> int:
    """The current organisation's value of `cap` (one of CAP_DEFAULTS): the operator's own
    setting for it, else the deployment's default. Read fresh, so an operator's change in
    the admin applies to the next request or task."""
    schema_name = schema_name or connection.schema_name
    own = Organisation.objects.filter(schema_name=schema_name).values_list(cap, flat=True).first()
    return own if own is not None else int(getattr(settings, CAP_DEFAULTS[cap]))


def organisation_cap_check(*, cap: str, existing, what: str) -> None:
    """Raise LimitReached when the organisation already has its cap of `existing` rows.

    Call inside the transaction that creates the new row: a transaction-scoped advisory
    lock per organisation and cap serialises concurrent creations, so two requests racing
    for the last place cannot both get it."""
    schema_name = connection.schema_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"cap:{schema_name}:{cap}"])
    limit = organisation_cap(cap=cap, schema_name=schema_name)
    count = existing.count()
    if count >= limit:
        raise LimitReached(
            f"This organisation may have at most {limit} {what}; delete one or ask an operator "
            "to raise the limit.",
            details={"limit": cap.removeprefix("max_"), "cap": limit, "current": count},
        )
