"""allauth adapters: who may sign up, and which organisation a new Google user joins.

Email/password accounts are created by operators only; Google sign-in creates accounts,
placing each new user through tenants.services.onboarding_organisation_for, which trusts
a company domain only on the strength of Google's `hd` claim.
"""

from __future__ import annotations

import structlog
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.db import transaction
from django.shortcuts import render

from tenants.managers import normalize_email_address
from tenants.services import onboarding_organisation_for

log = structlog.get_logger(__name__)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return False


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin) -> bool:
        return True

    def pre_social_login(self, request, sociallogin) -> None:
        # An unverified address proves nothing about who controls it; joining a company's
        # organisation on its strength would let anyone claim any domain.
        verified = any(
            address.verified and address.email.lower() == (sociallogin.user.email or "").lower()
            for address in sociallogin.email_addresses
        )
        if not sociallogin.user.email or not verified:
            log.warning("signin.refused_unverified_email", provider=sociallogin.account.provider)
            raise ImmediateHttpResponse(
                render(
                    request,
                    "tenants/signin_refused.html",
                    {
                        "reason": (
                            "Your Google account's email address is not verified. Verify it "
                            "with Google, then sign in again."
                        )
                    },
                    status=403,
                )
            )

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
            # extra_data holds the claims of the ID token allauth fetched from Google's token
            # endpoint itself (or Google's userinfo answer); `hd` is there only for a Google
            # Workspace account, set by Google, never by the user.
            hosted_domain = sociallogin.account.extra_data.get("hd")
            organisation, role = onboarding_organisation_for(
                email=user.email,
                display_name=user.name,
                workspace_domain=hosted_domain if isinstance(hosted_domain, str) else None,
            )
            user.organisation = organisation
            user.role = role
            saved = super().save_user(request, sociallogin, form)
        log.info(
            "signin.onboarded",
            user_id=str(saved.pk),
            org_id=str(organisation.pk),
            role=role,
            workspace=not organisation.is_personal,
        )
        return saved
