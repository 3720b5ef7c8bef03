"""The invitation email, sent through Django's email API (EMAIL_BACKEND: the console in
development, django-anymail or SMTP in production)."""

from __future__ import annotations

import secrets

import structlog
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from tenants.models import Invitation
from tenants.services.invitations import invitation_note_sent, invitation_url

log = structlog.get_logger(__name__)


class InvitationSendFailed(Exception):
    def __init__(self, error_class: str):
        self.error_class = error_class
        super().__init__(f"The email could not be sent ({error_class}); try Resend later.")


def invitation_send(*, invitation_id: str, nonce: str) -> bool:
    """Send the invitation's email if it is still pending with this nonce (a resend made
    an older message's task obsolete) and this link's email has not gone out yet (a copy of
    the message queued again by invitations_resend_unsent). Returns whether a message was
    sent; raises InvitationSendFailed when the email backend failed."""
    invitation = (
        Invitation.objects.select_related("organisation", "invited_by").filter(pk=invitation_id).first()
    )
    if (
        invitation is None
        or invitation.status != "pending"
        or not secrets.compare_digest(invitation.nonce, nonce)
        or invitation.last_sent_at is not None
    ):
        return False
    context = {
        "invitation": invitation,
        "organisation": invitation.organisation,
        "inviter": invitation.invited_by.name or invitation.invited_by.email,
        "url": invitation_url(invitation),
        "expires_at": invitation.expires_at,
    }
    message = EmailMultiAlternatives(
        subject=f"You are invited to join {invitation.organisation.name} on NexusAPI",
        body=render_to_string("tenants/email/invitation.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[invitation.email],
    )
    message.attach_alternative(render_to_string("tenants/email/invitation.html", context), "text/html")
    try:
        message.send()
    except Exception as exc:  # SMTP, a provider's API (anymail), DNS: all retried alike
        log.warning(
            "invitation.send_attempt_failed", invitation_id=invitation_id, error_class=type(exc).__name__
        )
        raise InvitationSendFailed(type(exc).__name__) from exc
    invitation_note_sent(invitation_id=invitation.pk)
    log.info("invitation.sent", invitation_id=invitation_id)
    return True
