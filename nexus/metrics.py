"""GET /metrics for Prometheus. Under gunicorn each worker is its own process, so when
PROMETHEUS_MULTIPROC_DIR is set the samples of every worker are aggregated from there;
otherwise a scrape would see one random worker's counts.

Outside DEBUG the endpoint fails closed: it answers only a scraper that presents
METRICS_TOKEN as a bearer token and/or calls from a network in METRICS_ALLOWED_IPS (each
configured check must pass); with neither configured it answers 404, like any refusal, so
a stranger learns nothing, not even that the endpoint exists. The address checked is the
connecting peer (REMOTE_ADDR), never X-Forwarded-For: a scraper calls the process from
inside the network, not through the public proxy.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


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


def metrics(request):
    if not allowed(request):
        return HttpResponseNotFound("not found\n", content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
