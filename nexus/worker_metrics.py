"""A Celery worker's own /metrics, for workers that cannot share web's
PROMETHEUS_MULTIPROC_DIR (their own containers or hosts: process ids repeat across
containers, so their files would collide). Each serves its own counts on
WORKER_METRICS_PORT, behind the same checks as web's /metrics (nexus.metrics_access), and
Prometheus scrapes every worker as well as web. The scrape-time series are web's alone."""

from __future__ import annotations

import os
import threading

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from nexus.metrics_access import allowed

log = structlog.get_logger(__name__)


class _EnvironRequest:
    """What the checks above read of a request (META), from a WSGI environ."""

    def __init__(self, environ: dict) -> None:
        self.META = environ


def counters_registry() -> CollectorRegistry:
    """The counters this process can see: every process's of its multiprocess directory
    (PROMETHEUS_MULTIPROC_DIR), or its own. Web's /metrics adds its scrape-time readings."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    return registry


def worker_metrics_app(environ, start_response):
    if environ.get("PATH_INFO") != "/metrics" or not allowed(_EnvironRequest(environ)):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return [generate_latest(counters_registry())]


# A worker's container is reached by Prometheus over its network: every interface of it.
_ALL_INTERFACES = "0.0.0.0"  # noqa: S104  # nosec B104


def serve_worker_metrics(port: int, host: str = _ALL_INTERFACES) -> threading.Thread:
    """Serve worker_metrics_app on `port` from a daemon thread of this (the worker's main)
    process; its pool's children count into the same multiprocess directory."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class _Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # one line per scrape is noise
            pass

    server = make_server(host, port, worker_metrics_app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True)
    thread.start()
    log.info("worker.metrics_serving", port=port)
    return thread
