"""allauth adapters: who may sign up, and which organisation a new Google user joins.

Email/password accounts are created by operators, or by accepting an invitation; Google
sign-in creates accounts, placing each new user through an invitation waiting in the
session (they opened its link first), or else through
tenants.services.onboarding_organisation_for, which trusts a company domain only on the
strength of Google's `hd` claim and only while the organisation admits its domain.
"""

from __future__ import annotations

import structlog
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.contrib import messages
from django.db import transaction
from django.shortcuts import render

from auditlog.context import actor_on_behalf_of
from auditlog.services import audit_record
from tenants.managers import normalize_email_address
from tenants.services import (
    DomainJoinClosed,
    onboarding_organisation_for,
    onboarding_refusal,
    user_record_sign_in_failure,
)
from tenants.services.invitations import (
    INVITATION_SESSION_KEY,
    Invitation,
    invitation_accept,
    invitation_from_token,
    may_come_back,
)

log = structlog.get_logger(__name__)


def _refused(request, reason: str, status: int = 403):
    return ImmediateHttpResponse(
        render(request, "tenants/signin_refused.html", {"reason": reason}, status=status)
    )


def _workspace_domain(sociallogin) -> str | None:
    # extra_data holds the claims of the ID token allauth fetched from Google's token
    # endpoint itself (or Google's userinfo answer); `hd` is there only for a Google
    # Workspace account, set by Google, never by the user.
    hosted_domain = sociallogin.account.extra_data.get("hd")
    return hosted_domain if isinstance(hosted_domain, str) else None


def _pending_invitation(request, email: str) -> Invitation | None:
    """The invitation whose link this browser opened before signing in, if it is still
    usable and for this address."""
    token = request.session.get(INVITATION_SESSION_KEY) if request is not None else None
    if not token:
        return None
    found = invitation_from_token(token)
    if isinstance(found, Invitation) and found.email == normalize_email_address(email):
        return found
    return None


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return False


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin) -> bool:
        return True

    def on_authentication_error(self, request, provider, error=None, exception=None, extra_context=None):
        user_record_sign_in_failure(email="", reason=f"google_{error or 'error'}", method="google")
        return super().on_authentication_error(request, provider, error, exception, extra_context)

    def pre_social_login(self, request, sociallogin) -> None:
        # An unverified address proves nothing about who controls it; joining a company's
        # organisation on its strength would let anyone claim any domain.
        email = sociallogin.user.email or ""
        verified = any(
            address.verified and address.email.lower() == email.lower()
            for address in sociallogin.email_addresses
        )
        if not email or not verified:
            log.warning("signin.refused_unverified_email", provider=sociallogin.account.provider)
            user_record_sign_in_failure(email=email, reason="unverified_email", method="google")
            raise _refused(
                request,
                "Your Google account's email address is not verified. Verify it with Google, then sign "
                "in again.",
            )
        user = sociallogin.user
        invitation = _pending_invitation(request, email)
        if invitation is not None:
            if sociallogin.is_existing and may_come_back(user):
                # A member removed earlier, invited back: the invitation reactivates the
                # account (allauth would refuse an inactive one) and places it.
                _join_by_invitation(request, sociallogin, invitation, user)
            return  # the invitation places a new account; its page, an existing one
        if sociallogin.is_existing and (user.organisation_id is not None or not user.is_active):
            return  # a member signing in; a removed (inactive) account is refused by allauth
        # A new account, or one that left its organisation: placed as a new user is. Checked
        # here, before allauth saves anything, so a refusal leaves nothing behind.
        refusal = onboarding_refusal(email=email, workspace_domain=_workspace_domain(sociallogin))
        if refusal is not None:
            user_record_sign_in_failure(
                email=email,
                reason="invitation_required",
                method="google",
                organisation_id=refusal.details["organisation_id"],
            )
            raise _refused(request, refusal.message)
        if sociallogin.is_existing:
            with transaction.atomic():
                _place(user, sociallogin)
                user.save(update_fields=["organisation", "role"])
                _record_joined(user)

    def populate_user(self, request, sociallogin, data):
        user = super().populate_user(request, sociallogin, data)
        user.email = normalize_email_address(user.email)
        full_name = sociallogin.account.extra_data.get("name") or " ".join(
            part for part in (data.get("first_name"), data.get("last_name")) if part
        )
        user.name = (full_name or "").strip()[:150]
        return user

    def save_user(self, request, sociallogin, form=None):
        with transaction.atomic():
            user = sociallogin.user
            invitation = _pending_invitation(request, user.email)
            if invitation is not None:
                user.organisation = None
                saved = super().save_user(request, sociallogin, form)
                return _join_by_invitation(request, sociallogin, invitation, saved)
            try:
                _place(user, sociallogin)
            except DomainJoinClosed as exc:  # the setting changed since pre_social_login
                raise _refused(request, exc.message) from None
            saved = super().save_user(request, sociallogin, form)
            _record_joined(saved)
        return saved


def _join_by_invitation(request, sociallogin, invitation: Invitation, user):
    """`user` accepts the invitation this sign-in started from; allauth then signs in the
    member (not the copy from before), and sends them to the dashboard: the sign-in was
    started with next=/invitations/<token>, a link used up now, whose page would say so."""
    joined = invitation_accept(invitation_id=invitation.pk, nonce=invitation.nonce, user=user)
    sociallogin.user = joined
    request.session.pop(INVITATION_SESSION_KEY, None)
    sociallogin.state["next"] = "/"
    messages.success(request, f"Welcome to {invitation.organisation.name}.")
    log.info("signin.joined_by_invitation", user_id=str(joined.pk), org_id=str(joined.organisation_id))
    return joined


def _place(user, sociallogin) -> None:
    """Give a Google user without an organisation one: their domain's, or a personal one
    (tenants.services.onboarding_organisation_for). The caller saves them."""
    user.organisation, user.role = onboarding_organisation_for(
        email=user.email, display_name=user.name, workspace_domain=_workspace_domain(sociallogin)
    )


def _record_joined(user) -> None:
    organisation = user.organisation
    audit_record(
        action="member.joined",
        organisation_id=organisation.pk,
        target_type="member",
        target_id=user.pk,
        target_label=user.email,
        facts={"role": user.role, "by": "personal" if organisation.is_personal else "domain"},
        actor=actor_on_behalf_of(user),
    )
    log.info(
        "signin.onboarded",
        user_id=str(user.pk),
        org_id=str(organisation.pk),
        role=user.role,
        workspace=not organisation.is_personal,
    )
