"""Chooses the organisation (and so the database schema) of each request from who is
calling, once, before any view runs: the JWT's `org` claim for API tokens, the key's
organisation for API keys (`Bearer nx_live_...`), the signed-in user's organisation for
sessions. Never from a hostname or a client-supplied header.
Unauthenticated requests stay in the public schema. The schema is reset afterwards, and
every request starts from public, so no request ever runs in another caller's schema."""

from __future__ import annotations

import structlog
from django.db import connection
from rest_framework import exceptions

from auditlog.middleware import client_ip
from tenants.apikeys import looks_like_api_key
from tenants.authentication import caller_from_api_key, caller_from_bearer


def _bearer_token(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or ""


class TenantFromCallerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Whatever schema the connection had, this request starts in public; what it had is
        # put back afterwards (for code that calls views in-process, such as tests).
        previous = connection.tenant
        connection.set_schema_to_public()
        request.tenant = None
        request.caller = None
        request.bearer_caller = None
        request.bearer_error = None
        request.api_key = None

        # Tokens are for the API; pages use the session. Honouring a token on a page would
        # pair one caller's organisation with another caller's session.
        raw = _bearer_token(request) if request.path.startswith("/api/") else None
        if raw is not None:
            try:
                if looks_like_api_key(raw):
                    caller = caller_from_api_key(raw, ip=client_ip(request))
                else:
                    caller = caller_from_bearer(raw)
            except exceptions.APIException as exc:
                request.bearer_error = exc
            else:
                request.bearer_caller = caller
                request.caller = caller.user
                request.api_key = caller.api_key
                request.tenant = caller.organisation
        elif request.user.is_authenticated:
            user = request.user
            request.caller = user
            if user.organisation_id is not None and user.organisation.is_active:
                request.tenant = user.organisation

        if request.tenant is not None:
            connection.set_tenant(request.tenant)
            structlog.contextvars.bind_contextvars(
                org_id=str(request.tenant.id), org_slug=request.tenant.slug
            )
        if request.caller is not None:
            structlog.contextvars.bind_contextvars(user_id=str(request.caller.pk))
        if request.api_key is not None:
            structlog.contextvars.bind_contextvars(api_key_id=str(request.api_key.pk))
        try:
            return self.get_response(request)
        finally:
            if previous is not None and previous.schema_name != "public":
                connection.set_tenant(previous)
            else:
                connection.set_schema_to_public()
