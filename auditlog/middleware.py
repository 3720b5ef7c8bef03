"""Sets the audit log's actor for each request, after the tenant middleware has identified
the caller: an API key (`key:<name>`), an operator in the admin (`operator:<email>`), a
signed-in user (`user:<email>`), or anonymous; with the client's address (behind
RATE_LIMIT_TRUSTED_PROXIES proxies, the address they saw) and user agent."""

from __future__ import annotations

import ipaddress

from auditlog.context import Actor, acting_as
from auditlog.models import ActorKind
from nexus.net import request_address


def client_ip(request) -> str | None:
    """The caller's address, exactly (not the /64 the rate limiter counts by), or None
    when it is not one (nexus.net.request_address)."""
    try:
        parsed = ipaddress.ip_address(request_address(request))
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def actor_for(request) -> Actor:
    common = {
        "ip": client_ip(request),
        "user_agent": request.headers.get("User-Agent", "")[:255],
        "request_id": str(getattr(request, "request_id", "") or "")[:64],
    }
    key = getattr(request, "api_key", None)
    if key is not None:
        return Actor(kind=ActorKind.KEY, label=f"key:{key.name}", id=str(key.pk), **common)
    user = getattr(request, "caller", None) or getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_staff and request.path.startswith("/admin/"):
            return Actor(kind=ActorKind.OPERATOR, label=f"operator:{user.email}", id=str(user.pk), **common)
        return Actor(kind=ActorKind.USER, label=f"user:{user.email}", id=str(user.pk), **common)
    return Actor(kind=ActorKind.ANONYMOUS, label="anonymous", **common)


class AuditActorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(actor_for(request)):
            return self.get_response(request)
