"""Content-Security-Policy on every response: pages, API, admin, Swagger UI and errors.
Every script and style is a file served from our own origin (vendored under static/), so
the policy allows 'self' only; an injected inline script or handler cannot run. The
policy is one setting (CONTENT_SECURITY_POLICY) so an operator who must add a source
changes it in one place. See docs/specs/foundation.md."""

from __future__ import annotations

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
