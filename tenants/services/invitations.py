"""Invitations to join an organisation (docs/specs/team-access.md): create, resend, revoke,
accept, and the signed single-use link. Public schema; every query takes the organisation,
and every change is recorded in the audit log in its transaction.

The link signs (invitation id, nonce) with its own salt; resending rotates the nonce, so
only the newest link works, and only until it expires, is revoked or is used."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from math import ceil

import structlog
from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from auditlog.context import actor_on_behalf_of
from auditlog.services import audit_record
from nexus.access import access_by_id
from nexus.api.errors import Conflict, LimitReached, field_error
from nexus.celery import send_on_commit
from nexus.locks import advisory_xact_lock
from tenants.managers import normalize_email_address
from tenants.models import Invitation, Organisation, Role, User

log = structlog.get_logger(__name__)

SALT = "tenants.invitation"
# The invitation token a browser opened before going to sign in with Google.
INVITATION_SESSION_KEY = "invitation_token"
SEND_TASK = "tenants.send_invitation"


class InvitationRefused(Conflict):
    """The invitation cannot be used by this account (or at all); `reason` says why."""

    code = "INVITATION_REFUSED"


@dataclass(frozen=True)
class LinkProblem:
    reason: str  # invalid | expired | revoked | accepted
    message: str


# Neither accepted nor revoked (pending, or expired and not yet replaced).
OPEN = Q(accepted_at__isnull=True, revoked_at__isnull=True)


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"i": str(invitation.pk), "n": invitation.nonce}, salt=SALT, compress=True)


def invitation_url(invitation: Invitation) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/invitations/{invitation_token(invitation)}"


def invitation_from_token(token: str) -> Invitation | LinkProblem:
    """The invitation a link names, or why it cannot be used. Never raises for a bad token."""
    try:
        payload = signing.loads(token, salt=SALT)
        invitation = Invitation.objects.select_related("organisation", "invited_by").get(
            pk=uuid.UUID(payload["i"])
        )
    except (signing.BadSignature, Invitation.DoesNotExist, KeyError, TypeError, ValueError):
        return LinkProblem("invalid", "This invitation link is not valid. Ask for a new invitation.")
    if not secrets.compare_digest(str(payload.get("n", "")), invitation.nonce):
        return LinkProblem(
            "invalid", "This invitation link was replaced by a newer one; use the latest email."
        )
    if invitation.accepted_at:
        return LinkProblem("accepted", "This invitation was already used. Sign in instead.")
    if invitation.revoked_at:
        return LinkProblem("revoked", "This invitation was withdrawn. Ask an admin for a new one.")
    if invitation.expires_at <= timezone.now():
        return LinkProblem("expired", "This invitation has expired. Ask an admin to send it again.")
    if not invitation.organisation.is_active:
        return LinkProblem("invalid", "This organisation is no longer active.")
    return invitation


def invitation_list(*, org: Organisation, statuses: list[str] | None = None):
    """The organisation's invitations, newest first; `statuses` of pending, accepted,
    revoked, expired (default: every one)."""
    invitations = Invitation.objects.filter(organisation=org).select_related("invited_by", "accepted_by")
    if statuses:
        now = timezone.now()
        wanted = Q(pk__in=[])
        if "pending" in statuses:
            wanted |= OPEN & Q(expires_at__gt=now)
        if "accepted" in statuses:
            wanted |= Q(accepted_at__isnull=False)
        if "revoked" in statuses:
            wanted |= Q(revoked_at__isnull=False)
        if "expired" in statuses:
            wanted |= OPEN & Q(expires_at__lte=now)
        invitations = invitations.filter(wanted)
    return invitations.order_by("-created_at")


def invitation_get(*, org: Organisation, invitation_id: uuid.UUID | str) -> Invitation:
    return access_by_id(
        invitation_list(org=org), invitation_id, not_found="No such invitation in this organisation."
    )


def _target(invitation: Invitation) -> dict:
    return {
        "target_type": "invitation",
        "target_id": invitation.pk,
        "target_label": invitation.email,
        "organisation_id": invitation.organisation_id,
    }


def _send_on_commit(invitation: Invitation) -> None:
    send_on_commit(SEND_TASK, str(invitation.pk), invitation.nonce, log_event="invitation.enqueue_failed")


def invitation_create(*, org: Organisation, invited_by: User, email: str, role: str) -> Invitation:
    """Invite `email` (any address, free mail included) with `role`; the email is sent
    after the commit. ValidationFailed (422) for a bad address or role; Conflict (409) when
    the address is already a member here or already invited (pending); LimitReached (409)
    at ORG_MAX_PENDING_INVITATIONS."""
    email = normalize_email_address(email or "")
    try:
        validate_email(email)
    except DjangoValidationError:
        raise field_error("email", f"{email!r} is not a valid email address.") from None
    if role not in Role.values:
        raise field_error("role", f"Unknown role {role!r}; use one of {Role.values}.")
    if User.objects.filter(email=email, organisation=org, is_active=True).exists():
        raise Conflict(
            f"{email} is already a member of this organisation.", details={"reason": "already_member"}
        )
    now = timezone.now()
    with transaction.atomic():
        advisory_xact_lock(f"invitations:{org.pk}")
        # An expired invitation no longer blocks a new one to the same address.
        stale = Invitation.objects.filter(OPEN, organisation=org, email=email, expires_at__lte=now)
        _revoke_each(stale, reason="expired_and_replaced")
        pending = Invitation.objects.filter(OPEN, organisation=org)
        if pending.filter(email=email).exists():
            raise Conflict(
                f"{email} already has a pending invitation; resend it instead.",
                details={"reason": "already_invited"},
            )
        if pending.count() >= settings.ORG_MAX_PENDING_INVITATIONS:
            raise LimitReached(
                f"This organisation may have at most {settings.ORG_MAX_PENDING_INVITATIONS} pending "
                "invitations; revoke some first.",
                details={"limit": "pending_invitations", "cap": settings.ORG_MAX_PENDING_INVITATIONS},
            )
        # Our domain sends these emails: a bound on them a day, however they are made
        # (withdrawing and inviting again included), so no organisation can spam with them.
        today = Invitation.objects.filter(organisation=org, created_at__gt=now - timedelta(days=1)).count()
        if today >= settings.ORG_MAX_INVITATIONS_PER_DAY:
            raise LimitReached(
                f"This organisation may send at most {settings.ORG_MAX_INVITATIONS_PER_DAY} invitations "
                "a day; try again tomorrow.",
                details={"limit": "invitations_per_day", "cap": settings.ORG_MAX_INVITATIONS_PER_DAY},
            )
        try:
            with transaction.atomic():
                invitation = Invitation.objects.create(
                    organisation=org,
                    email=email,
                    role=role,
                    invited_by=invited_by,
                    expires_at=now + timedelta(days=settings.INVITATION_TTL_DAYS),
                    nonce=secrets.token_hex(16),
                )
        except IntegrityError:
            raise Conflict(
                f"{email} already has a pending invitation.", details={"reason": "already_invited"}
            ) from None
        audit_record(action="invitation.created", after={"email": email, "role": role}, **_target(invitation))
        _send_on_commit(invitation)
    log.info("invitation.created", invitation_id=str(invitation.pk), role=role)
    return invitation


def _locked_pending(org: Organisation, invitation_id) -> Invitation:
    invitation = invitation_get(org=org, invitation_id=invitation_id)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at or invitation.revoked_at:
        raise Conflict(
            f"This invitation is {invitation.status}; nothing to do.", details={"status": invitation.status}
        )
    return invitation


def invitation_resend(*, org: Organisation, invitation_id) -> Invitation:
    """A new link (the older ones stop working), valid for INVITATION_TTL_DAYS again, sent
    after the commit. Conflict (409) for an accepted or revoked invitation; LimitReached
    (409) within INVITATION_RESEND_COOLDOWN_SECONDS of the last (re)send, or once the email
    was sent INVITATION_MAX_SENDS times (withdraw it and invite again, within the day's cap)."""
    with transaction.atomic():
        invitation = _locked_pending(org, invitation_id)
        now = timezone.now()
        issued_at = invitation.expires_at - timedelta(days=settings.INVITATION_TTL_DAYS)
        wait = settings.INVITATION_RESEND_COOLDOWN_SECONDS - (now - issued_at).total_seconds()
        if wait > 0 and not invitation.last_send_error:
            raise LimitReached(
                f"This invitation was sent moments ago; it can be sent again in {ceil(wait)} s.",
                details={"limit": "resend_cooldown", "retry_after": ceil(wait)},
            )
        if invitation.sent_count >= settings.INVITATION_MAX_SENDS:
            raise LimitReached(
                f"This invitation was sent {invitation.sent_count} times; withdraw it and invite again.",
                details={"limit": "sends_per_invitation", "cap": settings.INVITATION_MAX_SENDS},
            )
        invitation.nonce = secrets.token_hex(16)
        invitation.expires_at = now + timedelta(days=settings.INVITATION_TTL_DAYS)
        invitation.last_send_error = ""
        invitation.last_sent_at = None  # the new link's email has not gone out yet
        invitation.save(update_fields=["nonce", "expires_at", "last_send_error", "last_sent_at"])
        audit_record(
            action="invitation.resent",
            facts={"expires_at": invitation.expires_at.isoformat()},
            **_target(invitation),
        )
        _send_on_commit(invitation)
    return invitation


def invitation_revoke(*, org: Organisation, invitation_id) -> Invitation:
    """The link stops working at once. Conflict (409) if it was accepted or revoked."""
    with transaction.atomic():
        invitation = _locked_pending(org, invitation_id)
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(action="invitation.revoked", **_target(invitation))
    return invitation


def invitation_refusal(*, invitation: Invitation, user: User) -> InvitationRefused | None:
    """Why this account cannot accept `invitation` (whatever the link's state), or None:
    another address (`wrong_account`), a member here already (`already_member`), or a
    member of another organisation (`in_another_organisation`: leave it first)."""
    if user.email != invitation.email:
        return InvitationRefused(
            f"This invitation is for {invitation.email}; you are signed in as {user.email}.",
            details={"reason": "wrong_account"},
        )
    if not user.is_active and not may_come_back(user):
        return InvitationRefused(
            f"The account for {user.email} is locked; an operator must unlock it.",
            details={"reason": "locked"},
        )
    if user.organisation_id == invitation.organisation_id and user.is_active:
        return InvitationRefused(
            "You are already a member of this organisation.", details={"reason": "already_member"}
        )
    if user.organisation_id is not None:
        return InvitationRefused(
            f"Your account belongs to {user.organisation.name}. Leave it first (Members page, "
            "'Leave organisation'), then open this invitation again.",
            details={"reason": "in_another_organisation", "organisation": user.organisation.name},
        )
    return None


def invitation_accept(*, invitation_id, nonce: str, user: User) -> User:
    """`user` joins the invitation's organisation with its role, and the invitation is used
    up, in one transaction with the invitation row locked (two tabs cannot both use it).

    InvitationRefused (409) when the link is no longer usable, when the account's address
    is not the invited one (`wrong_account`), or when the account belongs to another
    organisation (`in_another_organisation`: leave it first; one organisation per user)."""
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("organisation")
            .filter(pk=invitation_id)
            .first()
        )
        if (
            invitation is None
            or not secrets.compare_digest(invitation.nonce, nonce)
            or invitation.status != "pending"
        ):
            raise InvitationRefused("This invitation can no longer be used.", details={"reason": "unusable"})
        user = User.objects.select_for_update().get(pk=user.pk)
        refusal = invitation_refusal(invitation=invitation, user=user)
        if refusal is not None:
            raise refusal
        user.organisation = invitation.organisation
        user.role = invitation.role
        user.is_active = True
        user.removed_at = None
        user.save(update_fields=["organisation", "role", "is_active", "removed_at"])
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        actor = actor_on_behalf_of(user)  # signing up through the link: no request user yet
        audit_record(
            action="invitation.accepted", facts={"role": invitation.role}, actor=actor, **_target(invitation)
        )
        audit_record(
            actor=actor,
            action="member.joined",
            organisation_id=invitation.organisation_id,
            target_type="member",
            target_id=user.pk,
            target_label=user.email,
            facts={"role": invitation.role, "by": "invitation", "invitation_id": str(invitation.pk)},
        )
    log.info("invitation.accepted", invitation_id=str(invitation.pk), user_id=str(user.pk))
    return user


def may_come_back(user: User) -> bool:
    """Whether an invitation may reactivate this inactive account: one an organisation's
    admin removed, never one an operator locked, nor an operator's own."""
    return (
        not user.is_active
        and user.organisation_id is None
        and user.removed_at is not None
        and not (user.is_staff or user.is_superuser)
    )


def account_can_sign_in(email: str) -> bool:
    """Whether the address has an account that signs in (and so accepts by signing in). A
    removed member's account is inactive: the invitation itself lets them back in."""
    return User.objects.filter(email=normalize_email_address(email), is_active=True).exists()


def invitation_accept_with_password(*, invitation: Invitation, password: str, name: str = "") -> User:
    """Give the invited address an account with `password` (already checked against the
    validators) and accept, in one transaction: a new account, or the inactive account of a
    member removed earlier (the emailed link proves the address; the old password is
    replaced). InvitationRefused (409) when an active account has the address (it signs in
    and accepts instead)."""
    try:
        with transaction.atomic():
            existing = User.objects.select_for_update().filter(email=invitation.email).first()
            if existing is not None and existing.is_active:
                raise InvitationRefused(
                    f"An account for {invitation.email} exists already: sign in, then accept.",
                    details={"reason": "has_account"},
                )
            if existing is not None and not may_come_back(existing):
                raise InvitationRefused(
                    f"The account for {invitation.email} is locked; an operator must unlock it.",
                    details={"reason": "locked"},
                )
            if existing is not None:
                existing.set_password(password)
                existing.name = name.strip()[:150] or existing.name
                existing.save(update_fields=["password", "name"])
                user = existing
            else:
                user = User.objects.create_user(
                    invitation.email, password, organisation=None, name=name.strip()[:150]
                )
            return invitation_accept(invitation_id=invitation.pk, nonce=invitation.nonce, user=user)
    except IntegrityError:
        raise InvitationRefused(
            f"An account for {invitation.email} was created at the same time: sign in, then accept.",
            details={"reason": "has_account"},
        ) from None


def invitation_note_sent(*, invitation_id, error: str = "") -> None:
    """Record a send attempt's outcome (the list shows the last error to admins)."""
    if error:
        Invitation.objects.filter(pk=invitation_id).update(last_send_error=error[:300])
        return
    now = timezone.now()
    Invitation.objects.filter(pk=invitation_id).update(
        sent_count=F("sent_count") + 1, last_sent_at=now, last_send_error=""
    )


def invitations_revoke_sent_by(*, user: User, reason: str) -> int:
    """Withdraw every pending invitation `user` sent (they left, were removed or demoted):
    an invitation never outlives its sender's right to send it. Inside the caller's
    transaction; returns how many."""
    return _revoke_each(Invitation.objects.filter(OPEN, invited_by=user), reason=reason)


def _revoke_each(invitations, *, reason: str) -> int:
    """Revoke each of `invitations` (locked), recording why; returns how many."""
    now = timezone.now()
    count = 0
    for invitation in invitations.select_for_update():
        invitation.revoked_at = now
        invitation.save(update_fields=["revoked_at"])
        audit_record(action="invitation.revoked", facts={"reason": reason}, **_target(invitation))
        count += 1
    return count


# An invitation whose email has neither gone out nor failed this long after it was made (or
# resent) lost its message (a broker outage between the commit and the send): sent again.
UNSENT_AFTER = timedelta(minutes=15)


def invitations_resend_unsent() -> int:
    """Queue the email again for every pending invitation whose message was lost; returns
    how many. The task sends nothing for a link resent meanwhile (the nonce changed)."""
    now = timezone.now()
    issued_before = now - UNSENT_AFTER + timedelta(days=settings.INVITATION_TTL_DAYS)
    unsent = Invitation.objects.filter(
        OPEN,
        last_sent_at__isnull=True,
        last_send_error="",
        expires_at__gt=now,
        expires_at__lt=issued_before,  # made or resent more than UNSENT_AFTER ago
    )
    count = 0
    for invitation in unsent.iterator():
        with transaction.atomic():
            _send_on_commit(invitation)
        count += 1
    if count:
        log.warning("invitation.resent_unsent", count=count)
    return count
