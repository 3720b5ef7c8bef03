"""What ties a log line, a Sentry event and a metric to the work it came from.

- Workers: every task runs with `task_id`, `task`, and (when it runs for an organisation)
  `org_id` and `org_slug` bound in structlog's context, and ends with one `task` line
  carrying `status` and `duration_ms`; a task that raised is counted.
- Sentry (`sentry_init`): every event is tagged from that same context, so an event carries
  the organisation, user, request, task, job or run of the log lines around it; personal
  data and secrets are scrubbed before an event leaves the process.

See docs/specs/observability.md.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery.signals import task_failure, task_postrun, task_prerun, worker_ready
from prometheus_client import Counter

from nexus.logging import redact_secrets, redact_text

log = structlog.get_logger("nexus.task")

TASK_FAILURES = Counter("nexus_task_failures_total", "Celery tasks that raised an exception", ["task"])

# Context keys that become Sentry tags (a fixed list: nothing a caller chooses).
SENTRY_TAGS = (
    "org_id",
    "org_slug",
    "user_id",
    "request_id",
    "task_id",
    "task",
    "job_id",
    "run_id",
    "delivery_id",
)
# A periodic task is bookkeeping that runs every few seconds per organisation: its closing
# line is DEBUG unless it failed or took at least this long.
QUIET_TASK_SLOW_SECONDS = 1.0

_started: dict[str, float] = {}


def organisation_context() -> dict[str, str]:
    """org_id and org_slug of the organisation whose schema the connection is in ({} in
    public)."""
    from django.db import connection

    tenant = getattr(connection, "tenant", None)
    if tenant is None or getattr(tenant, "pk", None) is None or tenant.schema_name == "public":
        return {}
    return {"org_id": str(tenant.pk), "org_slug": tenant.slug}


def _quiet(task_name: str) -> bool:
    from django.conf import settings

    route = settings.CELERY_TASK_ROUTES.get(task_name, {})
    return route.get("queue") == settings.CELERY_QUEUES_BY_KIND["periodic"]


# Connected after tenant-schemas-celery's own task_prerun handler (nexus.celery imports
# it first), so the connection is already in the task's schema here.
@task_prerun.connect(dispatch_uid="nexus.observability.task_started")
def _task_started(task_id=None, task=None, **kwargs) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name, **organisation_context())
    _started[task_id] = time.perf_counter()


@worker_ready.connect(dispatch_uid="nexus.observability.worker_metrics")
def _serve_worker_metrics(**kwargs) -> None:
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from nexus.worker_metrics import serve_worker_metrics

        serve_worker_metrics(settings.WORKER_METRICS_PORT)


@task_failure.connect(dispatch_uid="nexus.observability.task_failed")
def _task_failed(sender=None, task_id=None, exception=None, **kwargs) -> None:
    TASK_FAILURES.labels(task=getattr(sender, "name", "unknown")).inc()
    record_task_failure()


# Task failures per minute across every worker, for the admin's operations page (a counter
# in each process cannot say "in the last hour"). Kept two hours; Redis down loses counts.
TASK_FAILURE_BUCKET_TTL_SECONDS = 2 * 3600


_TASK_FAILURES = ("ops", "task_failures")


def record_task_failure() -> None:
    from nexus.redis import minute_count_add

    try:
        minute_count_add(*_TASK_FAILURES, ttl_seconds=TASK_FAILURE_BUCKET_TTL_SECONDS)
    except Exception:  # the failure itself is logged and counted; this count is for the page
        log.warning("task.failure_unrecorded")


def task_failures_per_minute(minutes: int = 60) -> list[int]:
    """Task failures in each of the last `minutes` minutes, oldest first. Raises when Redis
    does not answer."""
    from nexus.redis import get_redis, minute_keys

    values = get_redis().mget(minute_keys(*_TASK_FAILURES, minutes=minutes))
    return [int(value) if value else 0 for value in values]


@task_postrun.connect(dispatch_uid="nexus.observability.task_finished")
def _task_finished(task_id=None, task=None, state=None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    duration = time.perf_counter() - started if started is not None else 0.0
    failed = state not in ("SUCCESS", None)
    if failed:
        level = "warning"
    elif _quiet(task.name) and duration < QUIET_TASK_SLOW_SECONDS:
        level = "debug"
    else:
        level = "info"
    getattr(log, level)("task", status=state, duration_ms=round(duration * 1000, 2))
    structlog.contextvars.clear_contextvars()


# --- Sentry -------------------------------------------------------------------------------------


def _structured(record) -> tuple[str, dict[str, Any]] | None:
    """A structlog line's event name and fields (its record carries them as a dict)."""
    message = getattr(record, "msg", None)
    if not isinstance(message, dict):
        return None
    fields = {key: value for key, value in message.items() if key not in ("event", "exc_info")}
    return str(message.get("event", "")), fields


def _before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """A log line's breadcrumb: its event name and fields. Any other (an SQL query, an HTTP
    call): no data (SQL parameters are a user's values). Breadcrumbs leave the process only
    inside an event, and _before_send redacts them there: once per event, not once per log
    line."""
    structured = _structured(hint.get("log_record")) if hint else None
    if structured is not None:
        crumb["message"], crumb["data"] = structured
    else:
        crumb.pop("data", None)
    return crumb


def _before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    # A log line's event: titled by its event name (so Sentry groups by what happened, not by
    # the ids in the line), its fields as extra data.
    structured = _structured(hint.get("log_record")) if hint else None
    if structured is not None:
        name, fields = structured
        event["logentry"] = {"message": name, "params": []}
        event.setdefault("extra", {}).update(fields)
        # One issue per kind of failure (a failing source of every organisation is one
        # issue, with each event tagged by organisation), not one per message text.
        event["fingerprint"] = [name, str(fields.get("error_class", ""))]
    context = structlog.contextvars.get_contextvars()
    tags = event.setdefault("tags", {})
    for key in SENTRY_TAGS:
        if context.get(key) is not None:
            tags[key] = str(context[key])
    # Only the user's id: never their email, name or address.
    user_id = context.get("user_id")
    event["user"] = {"id": str(user_id)} if user_id is not None else {}
    # What the log redaction hides in a line is hidden in an event too: its extra data and
    # the exception messages (a driver's message can carry a value from the input).
    if isinstance(event.get("extra"), dict):
        event["extra"] = redact_secrets(None, "", event["extra"])
    for value in (event.get("exception") or {}).get("values", []):
        if isinstance(value.get("value"), str):
            value["value"] = redact_text(value["value"])
    breadcrumbs = event.get("breadcrumbs")
    crumbs = breadcrumbs.get("values", []) if isinstance(breadcrumbs, dict) else breadcrumbs or []
    for crumb in crumbs:
        if isinstance(crumb.get("message"), str):
            crumb["message"] = redact_text(crumb["message"])
        if isinstance(crumb.get("data"), dict):
            crumb["data"] = redact_secrets(None, "", crumb["data"])
    request = event.get("request")
    if isinstance(request, dict):
        for part in ("data", "cookies", "query_string", "env"):
            request.pop(part, None)
        if isinstance(request.get("url"), str):  # an invitation link's token is in its path
            request["url"] = redact_text(request["url"])
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: value
                for name, value in headers.items()
                if name.lower() not in ("authorization", "cookie", "x-api-key", "stripe-signature")
            }
    return event


# What the SDK may collect by itself: nothing personal or secret. Every category is named,
# since a category left out of this dict takes the SDK's permissive default (SQL parameters,
# queue payloads, AI inputs and outputs, every header).
DATA_COLLECTION = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "allowlist", "terms": ["accept", "content-type", "content-length",
                                                                "user-agent", "x-request-id"]}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "gen_ai": {"inputs": False, "outputs": False},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}  # fmt: skip


def sentry_init(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> None:
    import logging

    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger

    # A request with a Host header not ours is a stranger's probe, logged at ERROR by Django;
    # as Sentry events it would let anyone spend the quota.
    ignore_logger("django.security.DisallowedHost")

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        integrations=[
            DjangoIntegration(),
            CeleryIntegration(),
            # An ERROR line is an event (with its exception, when it has one); the lines
            # before it are its breadcrumbs.
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        # Only the integrations named here: the SDK would otherwise hook every library it
        # finds (the Gemini SDK's among them, reporting provider errors the jobs handle
        # and record themselves).
        auto_enabling_integrations=False,
        traces_sample_rate=traces_sample_rate,
        # No user details, request bodies or local variables: a frame's locals hold the
        # text a job was given and the values of secrets.
        data_collection=DATA_COLLECTION,
        before_send=_before_send,
        before_breadcrumb=_before_breadcrumb,
        # Breadcrumbs are log lines: they go through the same scrubbing as the event.
        max_breadcrumbs=50,
    )
