"""JWT access tokens for the API, and the DRF authentication class that reads the result
of checking them.

The token is checked once per request, in tenants.middleware, before any view runs: that is
where the organisation (and so the schema) is chosen. This class only hands DRF the
outcome, so a bad token still produces DRF's 401 with a WWW-Authenticate header.

Revocation is checked on the one user query each request makes anyway: the token's `ver`
against the user's token_version, and its `fam` (token family) by an EXISTS in the same
statement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tenants.apikeys import KEY_SHAPE
from tenants.models import ApiKey, Organisation, Role, TokenFamily, User


@dataclass(frozen=True)
class BearerCaller:
    user: User
    organisation: Organisation
    token: AccessToken | ApiKey

    @property
    def api_key(self) -> ApiKey | None:
        """The key the caller authenticated with, or None for an access token."""
        return self.token if isinstance(self.token, ApiKey) else None


def refresh_token_for(user: User, *, family: TokenFamily | None = None) -> RefreshToken:
    """A refresh token (and, through `.access_token`, an access token) carrying the
    caller's organisation, role, token version and token family. Without `family` this is a
    new sign-in and starts one. `role` is informational: permissions always read the role
    from the database, so a demotion takes effect on the next request."""
    if user.organisation_id is None:
        raise ValueError("Only a member of an organisation can hold an API token")
    refresh = RefreshToken.for_user(user)
    expires_at = datetime.fromtimestamp(refresh["exp"], tz=UTC)
    if family is None:
        family = TokenFamily.objects.create(user=user, expires_at=expires_at)
    else:
        TokenFamily.objects.filter(pk=family.pk).update(expires_at=expires_at)
    refresh["org"] = str(user.organisation_id)
    refresh["role"] = user.role
    refresh["ver"] = user.token_version
    refresh["fam"] = str(family.pk)
    return refresh


def family_id_of(token) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(token.get("fam")))
    except ValueError:
        return None


def caller_from_bearer(raw_token: str) -> BearerCaller:
    """Validate an access token and the user and organisation it names.

    Raises AuthenticationFailed (401) for a bad, expired or tampered token, a token without
    an organisation, version or family, a revoked token (its version is not the user's, or
    its family is revoked), an inactive or unknown user, or a user no longer in that
    organisation; PermissionDenied (403) when the organisation is deactivated.
    """
    try:
        token = AccessToken(raw_token)
    except TokenError as exc:
        raise exceptions.AuthenticationFailed("The access token is invalid or expired.") from exc

    org_claim = token.get("org")
    user_id = token.get("user_id")
    if not org_claim or not user_id:
        raise exceptions.AuthenticationFailed("The access token names no organisation.")
    family_id = family_id_of(token)
    version = token.get("ver")
    if family_id is None or not isinstance(version, int):
        raise exceptions.AuthenticationFailed("The access token is from an older release; get a new one.")
    live_family = TokenFamily.objects.filter(pk=family_id, user=OuterRef("pk"), revoked_at__isnull=True)
    try:
        user = (
            User.objects.select_related("organisation")
            .annotate(token_family_live=Exists(live_family))
            .get(pk=user_id)
        )
    except (User.DoesNotExist, ValueError, TypeError) as exc:
        raise exceptions.AuthenticationFailed("The user of this token does not exist.") from exc
    if not user.is_active:
        raise exceptions.AuthenticationFailed("The user of this token is inactive.")
    if version != user.token_version or not user.token_family_live:
        raise exceptions.AuthenticationFailed("This token was revoked; sign in again.")
    if user.organisation_id is None or str(user.organisation_id) != str(org_claim):
        raise exceptions.AuthenticationFailed(
            "The user of this token is no longer a member of its organisation."
        )
    if not user.organisation.is_active:
        raise exceptions.PermissionDenied("This organisation is deactivated.")
    return BearerCaller(user=user, organisation=user.organisation, token=token)


_KEY_REFUSED = "The API key is invalid or was revoked."


def caller_from_api_key(raw_key: str, *, ip: str | None = None) -> BearerCaller:
    """Validate an organisation API key (`nx_live_...`, docs/specs/team-access.md).

    AuthenticationFailed (401) for a malformed, unknown, revoked or expired key, or one
    whose creator is no longer an active admin of its organisation;
    PermissionDenied (403) when the organisation is deactivated. The caller acts as the key's
    creator for ownership, with the key as `token` and `api_key`. Records the key's last use
    (time and address) at most every API_KEY_LAST_USED_EVERY_SECONDS."""
    if not KEY_SHAPE.fullmatch(raw_key):  # nothing else reaches the database (NUL included)
        raise exceptions.AuthenticationFailed(_KEY_REFUSED)
    prefix = raw_key.partition(".")[0]
    key = (
        ApiKey.objects.select_related("organisation", "created_by")
        .filter(prefix=prefix, revoked=False)
        .first()
    )
    if key is None or not key.is_valid(raw_key):
        raise exceptions.AuthenticationFailed(_KEY_REFUSED)
    if key.has_expired:
        raise exceptions.AuthenticationFailed(
            f"The API key expired at {key.expiry_date:%Y-%m-%d %H:%M} UTC; create a new one."
        )
    creator = key.created_by
    # Only admins make keys, and a key never outlives its creator's admin rights (removal,
    # leaving and demotion revoke it too; this is the check that never relies on that).
    if not creator.is_active or creator.organisation_id != key.organisation_id or creator.role != Role.ADMIN:
        raise exceptions.AuthenticationFailed(_KEY_REFUSED)
    if not key.organisation.is_active:
        raise exceptions.PermissionDenied("This organisation is deactivated.")
    _note_use(key, ip)
    return BearerCaller(user=creator, organisation=key.organisation, token=key)


def _note_use(key: ApiKey, ip: str | None) -> None:
    now = timezone.now()
    fresh = key.last_used_at and now - key.last_used_at < timedelta(
        seconds=settings.API_KEY_LAST_USED_EVERY_SECONDS
    )
    if fresh and key.last_used_ip == ip:
        return
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=ip)


class TenantJWTAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        django_request = request._request
        error = getattr(django_request, "bearer_error", None)
        if error is not None:
            raise error
        caller: BearerCaller | None = getattr(django_request, "bearer_caller", None)
        if caller is None:
            return None
        return caller.user, caller.token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
