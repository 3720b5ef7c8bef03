"""Django-level error pages. Under /api/ they use the API's error envelope, so a client
never receives an HTML page (or a trace) from an unknown URL or an unhandled error."""

from __future__ import annotations

import sys

from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_exempt

from nexus.api.exceptions import OUTAGE_RETRY_AFTER_SECONDS, is_dependency_outage, json_error_response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _api_error(request, status: int, code: str, message: str):
    return json_error_response(request, status, code, message)


# No view serves the path, so there is nothing a forged request could do: the answer to any
# method is 404, not a CSRF refusal that would suggest the path exists.
@csrf_exempt
def not_found(request, exception=None):
    if _is_api(request):
        return _api_error(request, 404, "NOT_FOUND", "No such endpoint.")
    return render(request, "404.html", status=404)


def server_error(request):
    if _is_api(request):
        return _api_error(
            request,
            500,
            "INTERNAL_ERROR",
            "Something went wrong on our side. Quote the request id if you contact support.",
        )
    exc = sys.exc_info()[1]
    if exc is not None and is_dependency_outage(exc):
        return outage_page()
    try:
        return render(request, "500.html", status=500)
    except Exception as render_failure:
        # The page's base template reads the signed-in user; a failure there must not
        # escape as a bare server error (or, under DEBUG, the debug page).
        if is_dependency_outage(render_failure):
            return outage_page()
        raise


def outage_page() -> HttpResponse:
    """PostgreSQL or Redis is down: a standalone page, rendered without a request, so it
    needs neither."""
    response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
    return response


def permission_denied(request, exception=None):
    if _is_api(request):
        return _api_error(request, 403, "FORBIDDEN", "You do not have permission to do this.")
    return render(request, "403.html", status=403)


def bad_request(request, exception=None):
    if _is_api(request):
        # A bad Host header lands here (DisallowedHost); the code is the documented one.
        return _api_error(request, 400, "MALFORMED_REQUEST", "The request could not be understood.")
    return render(request, "400.html", status=400)


def csrf_failure(request, reason=""):
    if _is_api(request):
        return _api_error(
            request,
            403,
            "FORBIDDEN",
            "CSRF check failed: send the X-CSRFToken header from the csrftoken cookie.",
        )
    return render(
        request, "403.html", {"reason": "Your form expired. Reload the page and try again."}, status=403
    )
