"""gunicorn settings (used by `make up`, the Dockerfile and docker-compose)."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, min(4, multiprocessing.cpu_count()))))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
max_requests = 5000
max_requests_jitter = 500
accesslog = None  # nexus.middleware writes one structured line per request
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    # The first line an operator sees says when this is a development set-up (docker compose
    # with no .env, make up): fine to try the product, never to serve anyone.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus.settings")
    from django.conf import settings

    if settings.DEBUG:
        import structlog

        structlog.get_logger("nexus.web").warning(
            "web.development_mode",
            message="DEBUG is on"
            + (" with the public development SECRET_KEY" if settings.SECRET_KEY_IS_DEVELOPMENT else "")
            + ": for trying NexusAPI locally only. To deploy, set SECRET_KEY and DEBUG=false.",
        )


def child_exit(server, worker):
    # Prometheus multiprocess mode: drop the exited worker's live gauges.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
