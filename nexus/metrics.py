"""GET /metrics for Prometheus. Under gunicorn each worker is its own process, so when
PROMETHEUS_MULTIPROC_DIR is set the samples of every worker are aggregated from there;
otherwise a scrape would see one random worker's counts."""

from __future__ import annotations

import os

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics(request):
    allowed = settings.METRICS_ALLOWED_IPS
    if allowed and request.META.get("REMOTE_ADDR") not in allowed:
        return HttpResponseForbidden("forbidden\n", content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
