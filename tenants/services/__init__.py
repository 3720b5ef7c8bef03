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
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from auditlog.context import actor_on_behalf_of
from auditlog.services import audit_record, changed_fields
from nexus.api.errors import Conflict, Forbidden, LimitReached, Unauthorized, field_error, fields_error
from nexus.locks import advisory_xact_lock
from tenants.authentication import family_id_of, refresh_token_for
from tenants.freemail import is_free_mail_domain, normalise_domain
from tenants.managers import normalize_email_address
from tenants.models import Organisation, Plan, Role, TokenFamily, User
from tenants.selectors import member_get, member_list
from tenants.services.invitations import invitations_revoke_sent_by
from tenants.services.keys import api_keys_revoke_created_by

log = structlog.get_logger(__name__)

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _clean_domain(domain: str) -> str:
    cleaned = domain.strip().lower().lstrip("@")
    if not _DOMAIN_RE.match(cleaned):
        raise field_error("domain", f"{domain!r} is not a valid email domain.")
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
        raise field_error("name", "An organisation name of 1 to 100 characters is required.")
    if plan not in Plan.values:
        raise field_error("plan", f"Unknown plan {plan!r}; use one of {Plan.values}.")
    domain = None
    if email_domain:
        domain = _clean_domain(email_domain)
        if is_free_mail_domain(domain):
            raise field_error(
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
        raise field_error("email", f"{email!r} is not a valid email address.") from None
    if role not in Role.values:
        raise field_error("role", f"Unknown role {role!r}; use one of {Role.values}.")
    if password is not None:
        try:
            validate_password(password, User(email=email))
        except DjangoValidationError as exc:
            raise fields_error({"password": exc.messages}, message="The password is too weak.") from None
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


class DomainJoinClosed(Forbidden):
    """The domain's organisation admits people only by invitation (domain_auto_join off)."""

    code = "INVITATION_REQUIRED"


def onboarding_refusal(*, email: str, workspace_domain: str | None) -> DomainJoinClosed | None:
    """Why a new Google user of `email` cannot be placed, without creating anything: their
    Workspace domain's organisation admits people by invitation only. None when they can."""
    domain = normalise_domain(normalize_email_address(email).rpartition("@")[2])
    if not domain or normalise_domain(workspace_domain or "") != domain or is_free_mail_domain(domain):
        return None
    org = Organisation.objects.filter(email_domain=domain).only("name", "domain_auto_join").first()
    if org is None or org.domain_auto_join:
        return None
    return DomainJoinClosed(
        f"{org.name} admits new members by invitation only. Ask one of its admins to invite "
        f"{normalize_email_address(email)}, then open the invitation's link.",
        details={"organisation_id": str(org.pk)},
    )


def onboarding_organisation_for(
    *, email: str, display_name: str = "", workspace_domain: str | None = None
) -> tuple[Organisation, str]:
    """The organisation and role a first-time Google user gets.

    `workspace_domain` is Google's `hd` claim: present only for a Google Workspace account,
    and only Google (not the user) can set it. Only when it equals the email's domain, and
    that domain is not free-mail, does the user create (first of the domain, as admin) or
    join (as member) the domain's organisation. Anyone can register a Google account on
    any address they can receive mail at, so an address alone never proves a company let
    its owner in; every other account gets a personal organisation of its own, as admin.

    Must be called inside the transaction that saves the user: an advisory lock on the
    domain makes two simultaneous first sign-ins of one company produce one organisation.
    """
    email = normalize_email_address(email)
    local_part, _, domain = email.rpartition("@")
    if not local_part or not domain:
        raise field_error("email", f"{email!r} is not a valid email address.")
    domain = normalise_domain(domain)
    hosted_domain = normalise_domain(workspace_domain or "")
    if not hosted_domain or hosted_domain != domain or is_free_mail_domain(domain):
        org = organisation_create(name=f"{display_name.strip() or local_part} (personal)")
        return org, Role.ADMIN

    advisory_xact_lock(f"onboard:{domain}")
    org = Organisation.objects.filter(email_domain=domain).first()
    if org is not None:
        refusal = onboarding_refusal(email=email, workspace_domain=workspace_domain)
        if refusal is not None:
            raise refusal
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
        raise field_error("role", f"Unknown role {role!r}; use one of {Role.values}.")
    member = member_get(org=org, member_id=member_id)
    if member.role == role:
        return member
    if role == Role.MEMBER:
        _refuse_last_admin(org, member, "demote")
    before = member.role
    member.role = role
    member.save(update_fields=["role"])
    withdrawn = member_delegations_withdraw(user=member, why="demoted") if role == Role.MEMBER else {}
    audit_record(
        action="member.role_changed",
        organisation_id=org.pk,
        target_type="member",
        target_id=member.pk,
        target_label=member.email,
        before={"role": before},
        after={"role": role},
        facts=withdrawn,
    )
    log.info("member.role_changed", member_id=str(member.pk), role=role)
    return member


@transaction.atomic
def member_remove(*, org: Organisation, member_id: uuid.UUID | str) -> None:
    """Remove a member from the organisation: the account is deactivated and detached,
    signed out everywhere (every token and session ends at once), and the API keys they
    created are revoked."""
    member = member_get(org=org, member_id=member_id)
    _refuse_last_admin(org, member, "remove")
    _detach(member, org=org, removed=True)


def _detach(user: User, *, org: Organisation, removed: bool) -> None:
    """Take `user` out of `org` (removed by an admin: also deactivated, which an invitation
    may undo; or left), end every token and session, withdraw what they handed out, and
    record it, inside the caller's transaction."""
    action, why = ("member.removed", "removed") if removed else ("member.left", "left")
    role = user.role
    user.organisation = None
    user.role = Role.MEMBER
    fields = ["organisation", "role"]
    if removed:
        user.is_active = False
        user.removed_at = timezone.now()
        fields += ["is_active", "removed_at"]
    user.save(update_fields=fields)
    reason = TokenFamily.RevokedReason.REMOVED if removed else TokenFamily.RevokedReason.LEFT
    families = user_sign_out_everywhere(user=user, reason=reason, record=False)
    withdrawn = member_delegations_withdraw(user=user, why=why)
    audit_record(
        action=action,
        organisation_id=org.pk,
        target_type="member",
        target_id=user.pk,
        target_label=user.email,
        before={"role": role},
        facts={"token_families_revoked": families, **withdrawn},
    )
    log.info(action, member_id=str(user.pk))


def member_delegations_withdraw(*, user: User, why: str) -> dict:
    """What an admin handed out stops working when they stop being one (`why`: removed,
    left, demoted, or changed by an operator): the API keys they created are revoked and
    the invitations they sent withdrawn, each recorded. Inside the caller's transaction."""
    return {
        "api_keys_revoked": api_keys_revoke_created_by(user=user, reason=f"creator_{why}"),
        "invitations_revoked": invitations_revoke_sent_by(user=user, reason=f"inviter_{why}"),
    }


@transaction.atomic
def member_leave(*, user: User) -> Organisation:
    """The user leaves their organisation: the account stays active with no organisation
    (so an invitation elsewhere can be accepted), every token and session ends, and the
    keys they created and invitations they sent are withdrawn. Conflict (409) for the last
    admin of an organisation with other members; the only member may leave (the
    organisation and its data stay, for an operator to deactivate)."""
    org = Organisation.objects.filter(users=user).first()
    if org is None:
        raise Conflict("You are not a member of an organisation.", details={"reason": "no_organisation"})
    # The organisation's admins first, in id order, as removal and demotion lock them: two
    # admins leaving (or one leaving while another is removed) queue, never deadlock.
    admins = _lock_admins(org)
    # Only the user row is locked: PostgreSQL refuses FOR UPDATE on the nullable side of the
    # join that select_related makes for the organisation.
    user = User.objects.select_for_update(of=("self",)).select_related("organisation").get(pk=user.pk)
    if user.organisation_id != org.pk:
        raise Conflict(
            "You are no longer a member of this organisation.", details={"reason": "no_organisation"}
        )
    others = member_list(org=org).exclude(pk=user.pk)
    if user.role == Role.ADMIN and others.exists() and len(admins) <= 1:
        raise Conflict(
            "You are the last admin of the organisation; make someone else an admin before leaving.",
            details={"reason": "last_admin"},
        )
    _detach(user, org=org, removed=False)
    return org


# --- Organisation settings ------------------------------------------------------------------


@transaction.atomic
def organisation_update(*, org: Organisation, domain_auto_join: bool | None = None) -> Organisation:
    """Change the organisation's own settings (admins). Only what differs is written and
    recorded, with its before and after."""
    org = Organisation.objects.select_for_update().get(pk=org.pk)
    before = {"domain_auto_join": org.domain_auto_join}
    if domain_auto_join is not None:
        org.domain_auto_join = bool(domain_auto_join)
    was, now = changed_fields(before, {"domain_auto_join": org.domain_auto_join})
    if now:
        org.save(update_fields=list(now))
        audit_record(
            action="organisation.updated",
            organisation_id=org.pk,
            target_type="organisation",
            target_id=org.pk,
            target_label=org.name,
            before=was,
            after=now,
        )
    return org


# --- API tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    access_expires_at: datetime


def _token_pair(user: User, family: TokenFamily | None) -> TokenPair:
    refresh = refresh_token_for(user, family=family)
    access = refresh.access_token
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        access_expires_at=datetime.fromtimestamp(access["exp"], tz=UTC),
    )


def token_pair_issue(*, user: User) -> TokenPair:
    """A new sign-in: a token pair in a family of its own."""
    if not user.is_active or user.organisation_id is None:
        raise Unauthorized("Only an active member of an organisation can hold an API token.")
    if not user.organisation.is_active:
        raise Unauthorized("This organisation is deactivated.")
    return _token_pair(user, None)


class _ReplayAwareRefreshToken(RefreshToken):
    """A refresh token checked for signature, expiry and type, but not yet against the
    blacklist: token_pair_refresh looks at the blacklist itself, under a row lock, so that
    a replayed token is recognised as one instead of merely refused."""

    def check_blacklist(self) -> None:
        return None


_REFRESH_REFUSED = "The refresh token is invalid, expired or already used."


def _refresh_rotate(refresh: RefreshToken) -> TokenPair | str:
    """Rotate inside one transaction. Returns the new pair, or why it was refused (the
    caller raises after the commit, so a revoked family stays revoked)."""
    family_id = family_id_of(refresh)
    if family_id is None:
        return "invalid"
    with transaction.atomic():
        outstanding = (
            OutstandingToken.objects.select_for_update(of=("self",)).filter(jti=refresh["jti"]).first()
        )
        family = (
            TokenFamily.objects.select_for_update()
            .filter(pk=family_id, user_id=outstanding.user_id if outstanding else None)
            .first()
        )
        if outstanding is None or family is None or family.revoked_at is not None:
            return "invalid"
        _, newly_blacklisted = BlacklistedToken.objects.get_or_create(token=outstanding)
        if not newly_blacklisted:
            # This token was rotated before: either its owner or a thief holds the newer
            # one, and nothing tells which. End the whole sign-in for both.
            family.revoked_at = timezone.now()
            family.revoked_reason = TokenFamily.RevokedReason.REUSE
            family.save(update_fields=["revoked_at", "revoked_reason"])
            _record_family_revoked(family, reason=TokenFamily.RevokedReason.REUSE)
            return "reuse"
        user = User.objects.select_related("organisation").filter(pk=outstanding.user_id).first()
        if (
            user is None
            or not user.is_active
            or str(user.organisation_id) != str(refresh.get("org"))
            or refresh.get("ver") != user.token_version
        ):
            return "user"
        if not user.organisation.is_active:
            return "user"
        return _token_pair(user, family)


def token_pair_refresh(*, raw_refresh: str) -> TokenPair:
    """Exchange a refresh token for a new pair of the same family; the old refresh token is
    blacklisted.

    Unauthorized when the token is missing, invalid, expired, of a revoked family or an
    older token version, or its user is inactive or no longer in its organisation. A token
    that was already rotated is a replay: its whole family is revoked (every refresh token
    of that sign-in and the access tokens issued with them) and `auth.refresh_token_reuse`
    is logged, then Unauthorized. The new access token carries the user's current role.
    """
    if not raw_refresh:
        raise Unauthorized("No refresh token was sent.")
    try:
        refresh = _ReplayAwareRefreshToken(raw_refresh)
    except TokenError:
        raise Unauthorized(_REFRESH_REFUSED) from None
    outcome = _refresh_rotate(refresh)
    if isinstance(outcome, TokenPair):
        return outcome
    if outcome == "reuse":
        # No token material: the family id is enough to find every token it covered.
        log.warning(
            "auth.refresh_token_reuse",
            user_id=str(refresh.get("user_id")),
            family_id=str(family_id_of(refresh)),
        )
    if outcome == "user":
        raise Unauthorized("The user of this token is inactive or no longer in its organisation.")
    raise Unauthorized(_REFRESH_REFUSED)


def token_revoke(*, raw_refresh: str) -> None:
    """Log out: blacklist the refresh token and revoke its family, so no token rotated from
    this sign-in works again. An invalid or already revoked token is ignored: logging out
    twice is not an error."""
    if not raw_refresh:
        return
    try:
        refresh = _ReplayAwareRefreshToken(raw_refresh)
        refresh.blacklist()
    except TokenError:
        return
    family_id = family_id_of(refresh)
    if family_id is None:
        return
    with transaction.atomic():
        family = (
            TokenFamily.objects.select_for_update()
            .select_related("user")
            .filter(pk=family_id, user_id=refresh.get("user_id"), revoked_at__isnull=True)
            .first()
        )
        if family is not None:
            family.revoked_at = timezone.now()
            family.revoked_reason = TokenFamily.RevokedReason.LOGOUT
            family.save(update_fields=["revoked_at", "revoked_reason"])
            _record_family_revoked(family, reason=TokenFamily.RevokedReason.LOGOUT)


def _record_family_revoked(family: TokenFamily, *, reason: str) -> None:
    user = family.user
    audit_record(
        action="auth.token_family_revoked",
        organisation_id=user.organisation_id,
        target_type="token_family",
        target_id=family.pk,
        target_label=user.email,
        facts={"reason": str(reason)},
        actor=actor_on_behalf_of(user),
    )


def tokens_revoke_all(*, user: User) -> int:
    """Blacklist every unexpired refresh token of `user`; returns how many were live."""
    outstanding = list(
        OutstandingToken.objects.filter(
            user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
        )
    )
    BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in outstanding], ignore_conflicts=True
    )
    return len(outstanding)


def user_sign_out_everywhere(
    *, user: User, reason: str = TokenFamily.RevokedReason.SIGN_OUT_EVERYWHERE, record: bool = True
) -> int:
    """End every API token and browser session of `user` at once; returns how many token
    families (sign-ins) were revoked. Never fails.

    Bumping token_version makes every outstanding access and refresh token fail on its next
    use and changes the session hash, which ends every session; the families and the
    blacklist are revoked as well so the records say what happened."""
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(token_version=F("token_version") + 1)
        user.refresh_from_db(fields=["token_version"])
        families = TokenFamily.objects.filter(user=user, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=reason
        )
        tokens_revoke_all(user=user)
        if record:  # removal and leaving record themselves, with this count
            audit_record(
                action="auth.signed_out_everywhere",
                organisation_id=user.organisation_id,
                target_type="user",
                target_id=user.pk,
                target_label=user.email,
                facts={"token_families_revoked": families, "reason": str(reason)},
            )
    log.info(
        "auth.signed_out_everywhere",
        user_id=str(user.pk),
        families_revoked=families,
        reason=str(reason),
        token_version=user.token_version,
    )
    return families


def token_families_flush_expired() -> int:
    """Delete the token families whose newest refresh token has expired (no token of theirs
    can be used any more); returns how many."""
    deleted, _ = TokenFamily.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


def user_record_login(*, user: User, ip: str | None, method: str = "") -> None:
    """A sign-in: remember where from (shown to operators in the admin) and record it in
    the organisation's audit log."""
    try:
        cleaned = str(ip_address(ip)) if ip else None
    except ValueError:
        cleaned = None
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(last_login_ip=cleaned)
        # The row's organisation, not the instance's: a Google sign-in that accepted an
        # invitation signs in a copy of the user from before they joined.
        organisation_id = User.objects.filter(pk=user.pk).values_list("organisation_id", flat=True).first()
        audit_record(
            action="auth.signed_in",
            organisation_id=organisation_id,
            target_type="user",
            target_id=user.pk,
            target_label=user.email,
            facts={"method": method} if method else None,
            actor=actor_on_behalf_of(user).but(ip=cleaned),
        )


def user_record_sign_in_failure(*, email: str, reason: str, method: str, organisation_id=None) -> None:
    """A failed sign-in: in the audit log of the organisation that refused it
    (`organisation_id`), else of the account it named, if one exists (else in no
    organisation's: operators see it in the admin). No password or token is ever recorded."""
    email = normalize_email_address(email or "")[:254]
    user = User.objects.filter(email=email).only("pk", "organisation_id").first() if email else None
    audit_record(
        action="auth.sign_in_failed",
        organisation_id=organisation_id or (user.organisation_id if user else None),
        target_type="user",
        target_id=user.pk if user else None,
        # What was typed is kept only when it names an account (or Google vouched for it): a
        # password typed into the address field must not be kept for operators to read.
        target_label=email if (user is not None or method == "google") else "(unknown address)",
        facts={"reason": reason, "method": method},
    )


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
    advisory_xact_lock(f"cap:{schema_name}:{cap}")
    limit = organisation_cap(cap=cap, schema_name=schema_name)
    count = existing.count()
    if count >= limit:
        raise LimitReached(
            f"This organisation may have at most {limit} {what}; delete one or ask an operator "
            "to raise the limit.",
            details={"limit": cap.removeprefix("max_"), "cap": limit, "current": count},
        )
