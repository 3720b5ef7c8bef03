"""Rate limits on /api/: a sliding window in a Redis sorted set, per organisation for its
callers (a token refresh counts for the organisation its refresh token names) and per
client address for requests with no organisation (a missing or bad token), so every API
response carries the limit it is under.

One Lua script trims the window, counts and records the request, so concurrent requests
can never both take the last slot. Redis being unreachable lets requests through (the
limiter protects capacity; authentication and credits are enforced by PostgreSQL), logged
and counted, so a Redis outage is not an API outage. See docs/specs/rate-limits.md.
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.http import JsonResponse
from prometheus_client import Counter
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from nexus.api.exceptions import error_body
from nexus.redis import get_redis, redis_key
from tenants.models import Organisation

log = structlog.get_logger(__name__)

RATELIMIT_UNAVAILABLE = Counter(
    "nexus_ratelimit_unavailable_total", "Requests let through because the rate limiter's Redis failed"
)
RATELIMIT_REJECTED = Counter("nexus_ratelimit_rejected_total", "Requests refused with 429")

# Returns {allowed (1/0), remaining, milliseconds until the oldest request leaves the window}.
_SLIDING_WINDOW = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
local count = redis.call('ZCARD', key)
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, window_ms)
  local reset_ms = window_ms
  if oldest[2] then reset_ms = tonumber(oldest[2]) + window_ms - now end
  return {1, limit - count - 1, reset_ms}
end
if not oldest[2] then return {0, 0, window_ms} end
return {0, 0, tonumber(oldest[2]) + window_ms - now}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int | None  # None: unknown (Redis unavailable)
    reset_seconds: int


def check(*, bucket: str, limit: int, window_seconds: int) -> Decision:
    try:
        allowed, remaining, reset_ms = get_redis().eval(
            _SLIDING_WINDOW, 1, redis_key("ratelimit", bucket), limit, window_seconds * 1000, uuid.uuid4().hex
        )
    except Exception as exc:  # fail open: see the module docstring
        RATELIMIT_UNAVAILABLE.inc()
        log.warning("ratelimit.unavailable", error=type(exc).__name__)
        return Decision(allowed=True, limit=limit, remaining=None, reset_seconds=window_seconds)
    return Decision(
        allowed=bool(allowed),
        limit=limit,
        remaining=int(remaining),
        reset_seconds=max(1, math.ceil(int(reset_ms) / 1000)),
    )


def _headers(policy: str, decision: Decision, window_seconds: int) -> dict[str, str]:
    headers = {"RateLimit-Policy": f'"{policy}";q={decision.limit};w={window_seconds}'}
    if decision.remaining is not None:
        headers["RateLimit"] = f'"{policy}";r={decision.remaining};t={decision.reset_seconds}'
    return headers


def client_address(request) -> str:
    """The caller's address: REMOTE_ADDR, or with RATE_LIMIT_TRUSTED_PROXIES = n the n-th
    address from the right of X-Forwarded-For (what our own proxies appended; anything
    further left is the client's say and can be forged). IPv6 callers are counted by /64,
    the smallest block one subscriber usually holds, so new addresses do not mean new quota."""
    address = request.META.get("REMOTE_ADDR", "unknown")
    proxies = settings.RATE_LIMIT_TRUSTED_PROXIES
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _refreshing_organisation(request) -> Organisation | None:
    """A token refresh has no caller yet, but its refresh token names the organisation: it
    counts there, not against an address a whole office or proxy may share."""
    if not request.path.endswith("/auth/refresh"):
        return None
    raw = request.COOKIES.get(settings.REFRESH_COOKIE_NAME)
    if not raw:
        return None
    try:
        org_id = RefreshToken(raw).get("org")
    except TokenError:
        return None
    return Organisation.objects.filter(pk=org_id, is_active=True).first() if org_id else None


class RateLimitMiddleware:
    """Counts every /api/ request: an organisation's caller against the organisation's
    limit, anyone else against their address's. Runs after the tenant middleware, which has
    identified the caller."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not settings.RATE_LIMIT_ENABLED or not request.path.startswith("/api/"):
            return self.get_response(request)
        tenant = getattr(request, "tenant", None) or _refreshing_organisation(request)
        window = settings.RATE_LIMIT_WINDOW_SECONDS
        if tenant is not None:
            policy, who = "org", "organisation"
            decision = check(bucket=str(tenant.id), limit=tenant.api_rate_limit, window_seconds=window)
        else:
            policy, who = "anonymous", "this address"
            decision = check(
                bucket=f"anonymous:{client_address(request)}",
                limit=settings.RATE_LIMIT_ANONYMOUS,
                window_seconds=window,
            )
        if decision.allowed:
            response = self.get_response(request)
        else:
            RATELIMIT_REJECTED.inc()
            minutes = window // 60
            body = error_body(
                "RATE_LIMITED",
                f"Rate limit of {decision.limit} requests per {minutes} minutes reached for {who}; "
                f"retry in {decision.reset_seconds} s.",
                {"limit": decision.limit, "window_seconds": window, "retry_after": decision.reset_seconds},
            )
            body["meta"] = {"request_id": getattr(request, "request_id", None)}
            response = JsonResponse(body, status=429)
            response["Retry-After"] = str(decision.reset_seconds)
        for name, value in _headers(policy, decision, window).items():
            response[name] = value
        return response
