"""Who may read Prometheus metrics (web's /metrics and a worker's own): outside DEBUG only a
scraper that presents METRICS_TOKEN as a bearer token and/or calls from a network in
METRICS_ALLOWED_IPS (each configured check must pass); with neither configured, nobody
(the endpoint answers 404, like any refusal). The address checked is the connecting peer
(REMOTE_ADDR), never X-Forwarded-For."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings


def _token_matches(request, token: str) -> bool:
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    # Constant time, so the comparison does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def _address_allowed(request, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def allowed(request) -> bool:
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS
    if not token and not networks:
        return settings.DEBUG
    if token and not _token_matches(request, token):
        return False
    return not networks or _address_allowed(request, networks)
