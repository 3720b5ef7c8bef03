"""POST /internal/etl/dispatch: the scheduled ETL dispatch for deployments without beat.

Cloud Scheduler calls it every minute with an OIDC token Google signs for the scheduler's
service account. It queues the same `etl.dispatch_due` task beat would, which fans out to
every active organisation on the periodic queue, and answers 202 at once.

Disabled (ETL_DISPATCH_INVOKER unset), not a POST, or a token that is not Google's for the
configured audience and service account: 404, the answer for any path nobody serves, so a
stranger learns nothing. Why a call was refused is in the log (`etl.dispatch_refused`).
"""

from __future__ import annotations

import structlog
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from etl import tasks
from nexus import google_oidc
from nexus.api.exceptions import OUTAGE_RETRY_AFTER_SECONDS, json_error_response
from nexus.celery import ENQUEUE_FAILURES
from nexus.views import not_found

log = structlog.get_logger(__name__)


# The caller is a scheduler with a bearer token, never a browser with cookies.
@csrf_exempt
def dispatch(request):
    invoker = settings.ETL_DISPATCH_INVOKER
    if not invoker or request.method != "POST":
        return not_found(request)
    try:
        token = google_oidc.bearer_token(request)
        google_oidc.verify_service_account_token(
            token, audience=settings.ETL_DISPATCH_AUDIENCE, service_account=invoker
        )
    except google_oidc.InvalidToken as exc:
        log.warning("etl.dispatch_refused", reason=str(exc)[:200])
        return not_found(request)
    try:
        tasks.dispatch_due.apply_async()
    except Exception as exc:  # the broker is down: the scheduler retries on a 5xx
        ENQUEUE_FAILURES.labels(task=tasks.dispatch_due.name).inc()
        log.error("etl.dispatch_not_queued", error_class=type(exc).__name__)
        response = json_error_response(
            request, 503, "SERVICE_UNAVAILABLE", "The dispatch could not be queued; try again shortly."
        )
        response["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
        return response
    log.info("etl.dispatch_requested", invoker=invoker)
    return JsonResponse({"dispatched": True}, status=202)
