"""Organisation API keys (docs/specs/team-access.md): create, revoke, and revoke with their
creator. Public schema; every query takes the organisation, and every change is recorded
in the audit log in its transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from auditlog.context import Actor, current_actor
from auditlog.services import audit_record
from nexus.access import access_by_id
from nexus.api.errors import LimitReached, field_error
from nexus.api.fields import plain_text
from nexus.locks import advisory_xact_lock
from tenants.apikeys import SCOPES
from tenants.models import ApiKey, Organisation, User

log = structlog.get_logger(__name__)


def api_key_list(*, org: Organisation):
    return ApiKey.objects.filter(organisation=org).select_related("created_by").order_by("-created")


def api_key_get(*, org: Organisation, key_id: uuid.UUID | str) -> ApiKey:
    """The organisation's key with this id; another organisation's is the same 404."""
    return access_by_id(api_key_list(org=org), key_id, not_found="No such API key in this organisation.")


def _clean_scopes(scopes) -> list[str]:
    if not isinstance(scopes, list | tuple) or not scopes:
        raise field_error("scopes", f"Give at least one scope of {sorted(SCOPES)}.")
    unknown = sorted({str(scope) for scope in scopes} - set(SCOPES))
    if unknown:
        raise field_error("scopes", f"Unknown scopes {unknown}; use scopes of {sorted(SCOPES)}.")
    return sorted(set(scopes))


def _clean_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    now = timezone.now()
    if expires_at <= now:
        raise field_error("expires_at", "The expiry must be in the future.")
    if expires_at > now + timedelta(days=settings.API_KEY_MAX_DAYS):
        raise field_error("expires_at", f"A key may expire at most {settings.API_KEY_MAX_DAYS} days ahead.")
    return expires_at


def api_key_create(
    *, org: Organisation, created_by: User, name: str, scopes, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key and its secret (shown once; only its hash is kept). ValidationFailed (422)
    for an empty or long name, missing or unknown scopes, or an expiry in the past or more
    than API_KEY_MAX_DAYS ahead; LimitReached (409) at ORG_MAX_API_KEYS live keys."""
    name = plain_text(name or "", field="name").strip()
    if not name or len(name) > 50:
        raise field_error("name", "A name of 1 to 50 characters is required.")
    scopes = _clean_scopes(scopes)
    expires_at = _clean_expiry(expires_at)
    with transaction.atomic():
        # Serialises creations in one organisation, so two at once cannot pass the cap.
        advisory_xact_lock(f"api-keys:{org.pk}")
        live = ApiKey.objects.filter(organisation=org, revoked=False).count()
        if live >= settings.ORG_MAX_API_KEYS:
            raise LimitReached(
                f"This organisation may have at most {settings.ORG_MAX_API_KEYS} API keys; revoke one first.",
                details={"limit": "api_keys", "cap": settings.ORG_MAX_API_KEYS, "current": live},
            )
        key, secret = ApiKey.objects.create_key(
            organisation=org, created_by=created_by, name=name, scopes=scopes, expiry_date=expires_at
        )
        audit_record(
            action="api_key.created",
            organisation_id=org.pk,
            target_type="api_key",
            target_id=key.pk,
            target_label=f"{name} ({key.prefix})",
            after={
                "name": name,
                "scopes": scopes,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    log.info("api_key.created", api_key_id=str(key.pk), scopes=scopes)
    return key, secret


def _revoke(key: ApiKey, *, reason: str, actor: Actor | None = None) -> None:
    actor = actor or current_actor()
    ApiKey.objects.filter(pk=key.pk).update(
        revoked=True, revoked_at=timezone.now(), revoked_by_label=actor.label[:300]
    )
    audit_record(
        action="api_key.revoked",
        organisation_id=key.organisation_id,
        target_type="api_key",
        target_id=key.pk,
        target_label=f"{key.name} ({key.prefix})",
        facts={"reason": reason},
        actor=actor,
    )
    log.info("api_key.revoked", api_key_id=str(key.pk), reason=reason)


def api_key_revoke(*, org: Organisation, key_id: uuid.UUID | str) -> ApiKey:
    """Revoke at once: the next request with the key is a 401. Revoking a revoked key
    changes nothing (and records nothing)."""
    with transaction.atomic():
        key = api_key_get(org=org, key_id=key_id)
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if not key.revoked:
            _revoke(key, reason="revoked")
    key.refresh_from_db()
    return key


def api_keys_revoke_created_by(*, user: User, reason: str) -> int:
    """Revoke every live key `user` created (they left or were removed): a key never
    outlives its creator's access. Call inside the transaction that removes them."""
    keys = list(ApiKey.objects.select_for_update().filter(created_by=user, revoked=False))
    for key in keys:
        _revoke(key, reason=reason)
    return len(keys)
