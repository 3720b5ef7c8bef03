"""Verifying the OIDC tokens Google signs for a service account (Cloud Scheduler, Pub/Sub
push, Cloud Tasks): the signature against Google's published certificates, the issuer, the
audience, the expiry, and that the token names exactly the service account allowed.

The certificates are fetched once and kept for as long as Google's Cache-Control allows
(bounded), so a stream of forged tokens costs a signature check each; a token signed with a
key not yet seen, expired certificates or a failed fetch lead to at most one fetch a minute,
made by one thread while the others use what is cached (Google rotates its keys, publishing
the new one before using it).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import requests
import structlog
from django.conf import settings
from google.auth import jwt

log = structlog.get_logger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CERTS_MIN_SECONDS = 60
CERTS_MAX_SECONDS = 6 * 60 * 60
CERTS_DEFAULT_SECONDS = 60 * 60
CERTS_TIMEOUT_SECONDS = 5
# Tokens are small; anything longer is not one and is refused before any parsing.
MAX_TOKEN_CHARS = 4096
CLOCK_SKEW_SECONDS = 30

_MAX_AGE = re.compile(r"max-age=(\d+)")


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired, or for someone else."""


@dataclass
class _Certs:
    keys: dict[str, str]
    fetched_at: float
    expires_at: float


def _fetch(url: str) -> _Certs:
    response = requests.get(url, timeout=CERTS_TIMEOUT_SECONDS)
    response.raise_for_status()
    keys = response.json()
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise ValueError("certificates are not a {key id: certificate} map")
    match = _MAX_AGE.search(response.headers.get("Cache-Control", ""))
    lifetime = int(match.group(1)) if match else CERTS_DEFAULT_SECONDS
    now = time.monotonic()
    return _Certs(keys, now, now + min(max(lifetime, CERTS_MIN_SECONDS), CERTS_MAX_SECONDS))


_cache: _Certs | None = None
_last_attempt: float | None = None  # monotonic time of the last fetch, whatever its outcome
_lock = threading.Lock()


def _certificates(*, key_id: str) -> dict[str, str]:
    """Google's certificates: the cached ones while fresh and holding `key_id`. Otherwise
    one fetch at most a minute, by one thread at a time: a caller that finds another thread
    fetching, or the last attempt (successful or not) under a minute old, uses what is
    cached (expired or not) or is refused, so forged tokens and an unreachable Google
    never hold the server's threads."""
    global _cache, _last_attempt
    now = time.monotonic()
    cached = _cache
    if cached is not None and now < cached.expires_at and key_id in cached.keys:
        return cached.keys
    recently = _last_attempt is not None and now - _last_attempt < CERTS_MIN_SECONDS
    if recently or not _lock.acquire(blocking=False):
        return _usable(cached)
    try:
        _last_attempt = time.monotonic()
        try:
            _cache = _fetch(settings.GOOGLE_OIDC_CERTS_URL)
        except (requests.RequestException, ValueError) as exc:
            log.warning("oidc.certs_unavailable", error_class=type(exc).__name__)
            return _usable(cached)  # keep using what we had
        return _cache.keys
    finally:
        _lock.release()


def _usable(cached: _Certs | None) -> dict[str, str]:
    if cached is None:
        raise InvalidToken("Google's certificates are not available")
    return cached.keys


def _reset_cache() -> None:
    """Forget the certificates and the last attempt (tests, after pointing
    GOOGLE_OIDC_CERTS_URL elsewhere)."""
    global _cache, _last_attempt
    with _lock:
        _cache = None
        _last_attempt = None


def bearer_token(request) -> str:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("no bearer token")
    return token


def verify_service_account_token(token: str, *, audience: str, service_account: str) -> dict:
    """The token's claims when Google signed it for `audience` on behalf of
    `service_account`; InvalidToken otherwise."""
    try:
        header = jwt.decode_header(token)
    except (ValueError, TypeError) as exc:
        raise InvalidToken("malformed token") from exc
    key_id = header.get("kid")
    if not isinstance(key_id, str) or header.get("alg") != "RS256":
        raise InvalidToken("unexpected token header")
    try:
        claims = jwt.decode(
            token,
            certs=_certificates(key_id=key_id),
            audience=audience,
            clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
        )
    except (ValueError, TypeError) as exc:  # signature, expiry, audience, unknown key
        raise InvalidToken(str(exc)) from exc
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise InvalidToken("not issued by Google")
    if claims.get("email") != service_account or claims.get("email_verified") is not True:
        raise InvalidToken("not the allowed service account")
    return claims
