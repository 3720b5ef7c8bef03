"""structlog set-up: JSON lines in production, readable console output when DEBUG.

Standard-library loggers (Django, Celery, libraries) go through the same formatter, so one
process writes one format. Request-scoped values (request_id, org_id, user_id) are bound in
structlog's contextvars by the request middleware and appear on every line.
"""

from __future__ import annotations

import logging.config

import structlog

_SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def configure_logging(*, level: str = "INFO", fmt: str = "json") -> None:
    renderer = structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structured": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info,
                        renderer,
                    ],
                    "foreign_pre_chain": _SHARED_PROCESSORS,
                }
            },
            "handlers": {
                "stdout": {"class": "logging.StreamHandler", "formatter": "structured"},
            },
            "root": {"handlers": ["stdout"], "level": level},
            "loggers": {
                # Requests are logged once each by nexus.middleware; Django's own
                # per-request lines would duplicate them.
                "django.request": {"level": "ERROR"},
                "django.server": {"level": "WARNING"},
                "django.db.backends": {"level": "WARNING"},
                # One line per outbound HTTP call and per SDK call is noise, not signal.
                "httpx": {"level": "WARNING"},
                "httpx2": {"level": "WARNING"},
                "google_genai": {"level": "WARNING"},
            },
        }
    )
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
