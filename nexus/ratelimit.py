"""Rate limits: a sliding window in a Redis sorted set. Every /api/ request and every page
action that costs money or work (a job, a record job, a run, a purchase, a webhook test or
redelivery) counts against its organisation's one budget (a token refresh counts for the
organisation its refresh token names); requests with no organisation count per client
address: /api/ with a missing or bad token, Google sign-in (/auth/login, /auth/callback)
and Stripe's webhook, each with their own budget. A page over its limit is a friendly 429
page (an HTMX fragment for HTMX), never a charge.

One Lua script trims the window, counts and records the request, so concurrent requests
can never both take the last slot. Redis being unreachable lets requests through (the
limiter protects capacity; authentication and credits are enforced by PostgreSQL), logged
and counted, so a Redis outage is not an API outage. See docs/specs/rate-limits.md.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from prometheus_client import Counter
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from nexus.api.exceptions import error_body
from nexus.net import request_address
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


def organisation_window_reset(organisation: Organisation) -> None:
    """Forget the requests counted against an organisation's budget (an operator lifting a
    throttle once its cause is fixed; the smoke test's own organisation before a run)."""
    get_redis().delete(redis_key("ratelimit", str(organisation.id)))


def _headers(policy: str, decision: Decision, window_seconds: int) -> dict[str, str]:
    headers = {"RateLimit-Policy": f'"{policy}";q={decision.limit};w={window_seconds}'}
    if decision.remaining is not None:
        headers["RateLimit"] = f'"{policy}";r={decision.remaining};t={decision.reset_seconds}'
    return headers


def client_address(request) -> str:
    """The caller's address (nexus.net.request_address, behind RATE_LIMIT_TRUSTED_PROXIES).
    IPv6 callers are counted by /64, the smallest block one subscriber usually holds, so new
    addresses do not mean new quota."""
    address = request_address(request) or "unknown"
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


# Page actions that spend credits, start a Stripe checkout or queue work: the same budget
# as the API, or the pages would be a way round it. Safe methods (GET) only read.
_COSTLY_PAGE = re.compile(
    r"^/(?:jobs/submit|billing/buy|data/records/[^/]+/job|data/sources/[^/]+/(?:run|file|edit)"
    r"|data/sources/new|webhooks/create|webhooks/[^/]+/action|webhooks/deliveries/[^/]+/redeliver"
    r"|audits|audits/[^/]+/action|members/invite|members/invitations/[^/]+/action|api-keys/create)$"
)
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Routes that have no caller yet, each with a per-address budget of its own.
_ADDRESS_ROUTES = {
    "/auth/login": ("signin", "RATE_LIMIT_SIGNIN"),
    "/auth/callback": ("signin", "RATE_LIMIT_SIGNIN"),
    "/stripe/webhook": ("stripe-webhook", "RATE_LIMIT_STRIPE_WEBHOOK"),
}


@dataclass(frozen=True)
class Budget:
    policy: str  # the RateLimit-Policy name
    who: str  # for the message: whose budget ran out
    bucket: str
    limit: int
    answer: str  # how a refusal is told: "api" (envelope), "page" (HTML) or "plain"


def _budget_for(request) -> Budget | None:
    path = request.path
    if path.startswith("/api/"):
        tenant = getattr(request, "tenant", None) or _refreshing_organisation(request)
        if tenant is not None:
            return Budget("org", "organisation", str(tenant.id), tenant.api_rate_limit, "api")
        return Budget(
            "anonymous",
            "this address",
            f"anonymous:{client_address(request)}",
            settings.RATE_LIMIT_ANONYMOUS,
            "api",
        )
    # /internal/ (Cloud Scheduler's trigger) has no budget: its callers share Google's
    # addresses, so a budget counted before the token is checked could refuse the real
    # scheduler; forged tokens cost a signature check (nexus.google_oidc).
    if path in _ADDRESS_ROUTES:
        policy, setting = _ADDRESS_ROUTES[path]
        answer = "plain" if policy == "stripe-webhook" else "page"
        return Budget(
            policy, "this address", f"{policy}:{client_address(request)}", getattr(settings, setting), answer
        )
    if request.method not in _SAFE_METHODS and _COSTLY_PAGE.match(path):
        tenant = getattr(request, "tenant", None)
        if tenant is None:  # not signed in: the view sends them to sign in, nothing is spent
            return None
        return Budget("org", "your organisation", str(tenant.id), tenant.api_rate_limit, "page")
    return None


def _refusal(request, budget: Budget, decision: Decision, window: int):
    minutes = window // 60
    message = (
        f"Rate limit of {decision.limit} requests per {minutes} minutes reached for {budget.who}; "
        f"retry in {decision.reset_seconds} s."
    )
    if budget.answer == "api":
        body = error_body(
            "RATE_LIMITED",
            message,
            {"limit": decision.limit, "window_seconds": window, "retry_after": decision.reset_seconds},
        )
        body["meta"] = {"request_id": getattr(request, "request_id", None)}
        return JsonResponse(body, status=429)
    if budget.answer == "plain":
        return HttpResponse(message + "\n", status=429, content_type="text/plain")
    context = {
        "limit": decision.limit,
        "minutes": minutes,
        "retry_after": decision.reset_seconds,
        "who": budget.who,
    }
    if request.headers.get("HX-Request") == "true":
        response = render(request, "_rate_limited.html", context, status=429)
        # The message goes inside whatever the request targeted, which stays in place.
        response["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "429.html", context, status=429)


class RateLimitMiddleware:
    """Counts what _budget_for names: an organisation's API calls and costly page actions
    against the organisation's limit, anyone else against their address's. Runs after the
    tenant middleware, which has identified the caller."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        budget = _budget_for(request) if settings.RATE_LIMIT_ENABLED else None
        if budget is None:
            return self.get_response(request)
        window = settings.RATE_LIMIT_WINDOW_SECONDS
        decision = check(bucket=budget.bucket, limit=budget.limit, window_seconds=window)
        if decision.allowed:
            response = self.get_response(request)
        else:
            RATELIMIT_REJECTED.inc()
            response = _refusal(request, budget, decision, window)
            response["Retry-After"] = str(decision.reset_seconds)
        for name, value in _headers(budget.policy, decision, window).items():
            response[name] = value
        return response
