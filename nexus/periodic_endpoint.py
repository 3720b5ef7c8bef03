"""POST /internal/periodic/<entry>: beat's schedule, triggered from outside, for deployments
that scale beat to zero (Google Cloud Scheduler: ops/cloudrun/scheduler.yaml).

`entry` is a name in CELERY_BEAT_SCHEDULE (`etl-dispatch-due`, `jobs-sweep`, ...): the call
queues that entry's task exactly as beat would (the ETL dispatch then fans out to every
active organisation on the periodic queue) and answers 202 at once. The caller is a
scheduler presenting an OIDC token Google signs for one service account
(PERIODIC_INVOKER) and one audience (PERIODIC_AUDIENCE).

Disabled (PERIODIC_INVOKER unset), not a POST, an entry not in the schedule, or a token
that is not Google's for that account and audience: 404, the answer for any path nobody
serves, so a stranger learns nothing. Why a call was refused is in the log
(`periodic.trigger_refused`).
"""

from __future__ import annotations

import structlog
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from nexus import google_oidc
from nexus.api.exceptions import OUTAGE_RETRY_AFTER_SECONDS, json_error_response
from nexus.celery import ENQUEUE_FAILURES, task_named
from nexus.views import not_found

log = structlog.get_logger(__name__)

# Cloud Scheduler runs a job at most once a minute: a copy of a task that beat sends every
# few seconds (the sweeps, with `expires` equal to their period) keeps its place a minute.
MIN_EXPIRES_SECONDS = 60


# The caller is a scheduler with a bearer token, never a browser with cookies.
@csrf_exempt
def trigger(request, entry: str):
    invoker = settings.PERIODIC_INVOKER
    if not invoker or request.method != "POST":
        return not_found(request)
    try:
        token = google_oidc.bearer_token(request)
        google_oidc.verify_service_account_token(
            token, audience=settings.PERIODIC_AUDIENCE, service_account=invoker
        )
    except google_oidc.InvalidToken as exc:
        log.warning("periodic.trigger_refused", entry=entry[:100], reason=str(exc)[:200])
        return not_found(request)
    scheduled = settings.CELERY_BEAT_SCHEDULE.get(entry)
    if scheduled is None:
        log.warning("periodic.trigger_refused", entry=entry[:100], reason="not in the schedule")
        return not_found(request)
    options = {}
    if "expires" in scheduled.get("options", {}):
        options["expires"] = max(scheduled["options"]["expires"], MIN_EXPIRES_SECONDS)
    try:
        task_named(scheduled["task"]).apply_async(**options)
    except Exception as exc:  # the broker is down: the scheduler retries on a 5xx
        ENQUEUE_FAILURES.labels(task=scheduled["task"]).inc()
        log.error("periodic.trigger_not_queued", entry=entry, error_class=type(exc).__name__)
        response = json_error_response(
            request, 503, "SERVICE_UNAVAILABLE", "The task could not be queued; try again shortly."
        )
        response["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
        return response
    log.info("periodic.triggered", entry=entry, task=scheduled["task"])
    return JsonResponse({"entry": entry, "task": scheduled["task"], "queued": True}, status=202)
