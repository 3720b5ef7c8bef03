"""structlog set-up: JSON lines in production, readable console output when DEBUG.

Standard-library loggers (Django, Celery, libraries) go through the same formatter, so one
process writes one format. Request-scoped values (request_id, org_id, user_id) are bound in
structlog's contextvars by the request middleware, task-scoped ones (task_id, org_id, job_id,
run_id) by nexus.observability and the services, and appear on every line. Every line
carries `severity` for log collectors, and nothing secret or personal is ever written
(redact_secrets).
"""

from __future__ import annotations

import logging.config
import re
from typing import Any

import structlog

_SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


# Values never written, whatever a caller passes: keys that name a secret or personal data
# (whatever their case or separators: accessToken, X-Api-Key, client_secret), and anything
# in a string that looks like an email address, a bearer token, a JWT, credentials in a
# URL, a secret-named query parameter, a Stripe or Google key, an organisation API key, an
# invitation link's token.
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|secret|token|authorization|cookie|api_?key|private_?key|email|signature)s?(?:$|_)"
)
_SECRET_TEXT = [
    (re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"), "[jwt]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 [redacted]"),
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), "[redacted]@"),
    (
        re.compile(
            r"(?i)([?&;][a-z0-9_\-]*(?:key|token|secret|password|signature|sig|auth)[a-z0-9_\-]*=)[^&\s#\"']+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}|\bwhsec_[A-Za-z0-9+/=]{8,}"), "[stripe-key]"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), "[google-key]"),
    # An organisation API key (its prefix alone is no secret: lists show it).
    (re.compile(r"\bnx_(?:live|test)_[A-Za-z0-9]{4,}\.[A-Za-z0-9]{8,}"), "[api-key]"),
    # An invitation's link is a capability: the token in its path (not an invitation's
    # UUID, as /api/v1/invitations/<id> carries).
    (re.compile(r"(?<=/invitations/)(?![0-9a-fA-F]{8}-[0-9a-fA-F]{4}-)[^/\s?#\"']+"), "[token]"),
]


def _key_words(key: str) -> str:
    """accessToken, X-Api-Key, client-secret -> access_token, x_api_key, client_secret."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).replace("-", "_").lower()


REDACTED = "[redacted]"
# Counts and flags about secrets are not secrets.
_SAFE_VALUE_TYPES = (bool, int, float, type(None))


def redact_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def url_for_log(url: str) -> str:
    """A URL as a log line may carry it: scheme, host and path; never its credentials or
    query string (an organisation's source or receiver URL may hold a key there)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unreadable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def without_quoted_values(text: str) -> str:
    """A message with the values it quotes elided: "unrecognised date 'Ann's birthday'"
    -> "unrecognised date '…'". For messages built around a user's data."""
    return _QUOTED.sub("'…'", text)


def redact(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(_key_words(key)) and not isinstance(value, _SAFE_VALUE_TYPES):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(key, v) for v in value]
    return value


def redact_secrets(logger, method_name: str, event_dict: dict) -> dict:
    """The last processor before rendering (after the exception is formatted, so a
    traceback is covered too): see _SECRET_KEY and _SECRET_TEXT."""
    return {key: redact(key, value) for key, value in event_dict.items()}


# structlog's level name -> the severity Cloud Logging (and most collectors) classify by.
_SEVERITY = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "warn": "WARNING", "error": "ERROR",
             "exception": "ERROR", "critical": "CRITICAL"}  # fmt: skip


def add_severity(logger, method_name: str, event_dict: dict) -> dict:
    event_dict["severity"] = _SEVERITY.get(str(event_dict.get("level", method_name)).lower(), "DEFAULT")
    return event_dict


# Cloud Logging groups a request's lines under its trace when they carry these fields.
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"
# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS (span id decimal); traceparent (W3C):
# 00-TRACE_ID-SPAN_ID-FLAGS (hex). Both come from the caller: anything else is ignored.
_CLOUD_TRACE = re.compile(r"^([0-9a-f]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def cloud_trace_fields(*, project: str, cloud_trace: str, traceparent: str) -> dict[str, Any]:
    """The Cloud Logging trace fields for a request whose front end sent these headers;
    nothing when no project is configured or neither header is well formed."""
    if not project:
        return {}
    if match := _CLOUD_TRACE.match(cloud_trace.strip().lower()):
        trace, span, options = match.groups()
        span = f"{int(span):016x}" if span and int(span) < 2**64 else None
        sampled = options == "1" if options else None
    elif match := _TRACEPARENT.match(traceparent.strip().lower()):
        trace, span, flags = match.groups()
        sampled = bool(int(flags, 16) & 1)
    else:
        return {}
    if trace == "0" * 32:
        return {}
    fields: dict[str, Any] = {TRACE_FIELD: f"projects/{project}/traces/{trace}"}
    if span and span != "0" * 16:
        fields[SPAN_FIELD] = span
    if sampled is not None:
        fields[SAMPLED_FIELD] = sampled
    return fields


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
                        add_severity,
                        redact_secrets,
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
                # Each task ends with one structured `task` line (nexus.observability);
                # Celery's own "Task … succeeded" line would repeat it without the context.
                "celery.app.trace": {"level": "WARNING"},
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
