"""Periodic upkeep of the public schema, and sending invitation emails."""

from __future__ import annotations

import structlog
from celery import shared_task
from django.core.management import call_command

from tenants.services import token_families_flush_expired
from tenants.services.invitation_mail import InvitationSendFailed, invitation_send
from tenants.services.invitations import invitation_note_sent, invitations_resend_unsent

log = structlog.get_logger(__name__)


@shared_task(name="tenants.flush_expired_tokens")
def flush_expired_tokens() -> None:
    # Expired refresh tokens (and their blacklist rows) can never be used again; without
    # this the tables grow by a row per sign-in forever.
    call_command("flushexpiredtokens")
    families = token_families_flush_expired()
    log.info("tokens.flushed_expired", token_families=families)


# Retried after 30 s, 2 min and 8 min; then the error is kept on the invitation, where the
# admins' list shows it next to "Resend".
INVITATION_RETRY_DELAYS = (30, 120, 480)


@shared_task(name="tenants.send_invitation", bind=True, max_retries=len(INVITATION_RETRY_DELAYS))
def send_invitation(self, invitation_id: str, nonce: str) -> None:
    try:
        invitation_send(invitation_id=invitation_id, nonce=nonce)
    except InvitationSendFailed as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=INVITATION_RETRY_DELAYS[self.request.retries]) from exc
        invitation_note_sent(invitation_id=invitation_id, error=str(exc))
        log.error("invitation.send_failed", invitation_id=invitation_id, error_class=exc.error_class)


@shared_task(name="tenants.resend_unsent_invitations")
def resend_unsent_invitations() -> int:
    return invitations_resend_unsent()
