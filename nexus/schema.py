"""OpenAPI: the auth extension for our bearer class (tokens and API keys), and
post-processing hooks that make the published documents match the wire: every response
wrapped in the envelope actually sent ({"data", "meta"} or {"error", "meta"}), pagination
on every list, and every error status the shared plumbing can answer
(docs/specs/input-validation.md)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension

from nexus.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE


class TenantJWTScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantJWTAuthentication"
    name = "NexusBearerJWT"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT or nx_live_ API key",
            "description": (
                "An access token (a JWT from POST /api/v1/auth/token, 15 minutes, acting as its user "
                "with their role), or an organisation API key (`nx_live_...`, made by an admin at "
                "/api-keys or POST /api/v1/api-keys), limited to its scopes: outside them the answer "
                "is 403 with `details.required_scope`."
            ),
        }


class PlainTextFieldSchema(OpenApiSerializerFieldExtension):
    """Publishes the characters PlainTextField and FreeTextField refuse, as a pattern."""

    target_class = "nexus.api.fields.PlainTextField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["pattern"] = self.target.pattern
        return schema


_META = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "page": {"type": "integer"},
        "limit": {"type": "integer"},
        "total": {"type": "integer"},
    },
    "required": ["request_id"],
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
            "required": ["code", "message", "details"],
        },
        "meta": {"$ref": "#/components/schemas/Meta"},
    },
    "required": ["error", "meta"],
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


def wrap_in_envelope(result, generator, request, public):
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Meta"] = _META
    components["ErrorEnvelope"] = _ERROR
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for response in operation["responses"].values():
                content = response.get("content", {}).get("application/json")
                if content is None or "schema" not in content or content["schema"] == _ERROR_REF:
                    continue
                content["schema"] = {
                    "type": "object",
                    "properties": {"data": content["schema"], "meta": {"$ref": "#/components/schemas/Meta"}},
                    "required": ["data", "meta"],
                }
            operation["responses"].setdefault(
                "default",
                {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
                    },
                },
            )
    return result


def error_statuses(statuses: dict[int, str]) -> dict:
    """extend_schema(extensions=error_statuses({402: "PAYMENT_REQUIRED: ..."})): statuses
    an operation answers beyond the shared ones, documented with the error envelope."""
    return {"x-error-statuses": {str(status): text for status, text in statuses.items()}}


# extend_schema(extensions=COMPLETE_LIST) on a list returned whole (a job's events, the
# credit packs, per-source stats): it takes no page/limit.
COMPLETE_LIST = {"x-complete-list": True}

# An empty value (`?limit=`) is the default, like every empty query parameter.
_EMPTY = {"type": "string", "maxLength": 0}
_PAGINATION = [
    {
        "name": "page",
        "in": "query",
        "required": False,
        "description": f"1 to {MAX_PAGE}, default 1; a page past the end is an empty list.",
        "schema": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, _EMPTY]},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"Rows per page, 1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}.",
        "schema": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, _EMPTY]},
    },
]

# What the shared plumbing (middleware, parser, authentication, permissions, rate limiter,
# the exception handler) can answer for any operation; an operation adds its own (402, 409
# for a conflict) in its extend_schema.
_COMMON_ERRORS = {
    "400": "MALFORMED_REQUEST: the request could not be understood (bad Host, bad JSON).",
    "401": "UNAUTHORIZED: missing, expired or revoked credentials.",
    "403": "FORBIDDEN: the caller's role may not do this.",
    "404": "NOT_FOUND: no such object in the caller's organisation, or no such endpoint.",
    "422": "VALIDATION_ERROR: a value breaks a documented rule; details name the field.",
    "429": "RATE_LIMITED: the organisation's budget is spent; see Retry-After.",
    "503": "SERVICE_UNAVAILABLE: a dependency is down; retry after Retry-After.",
}
_BODY_ERRORS = {
    "409": "CONFLICT: the request conflicts with the current state (or an idempotent retry is running).",
    "413": "PAYLOAD_TOO_LARGE: the body is larger than this endpoint accepts.",
    "415": "UNSUPPORTED_MEDIA_TYPE: send application/json.",
}


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": dict(_ERROR_REF)}},
    }


def _is_list(operation: dict) -> bool:
    content = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
    return content.get("schema", {}).get("type") == "array"


def document_contract(result, generator, request, public):
    """Runs before wrap_in_envelope: pagination on every list, the error statuses, and a
    request body marked required when its schema requires anything (an absent body is {})."""
    components = result.get("components", {}).get("schemas", {})
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if method == "get" and _is_list(operation) and not operation.get("x-complete-list"):
                names = {p["name"] for p in _PAGINATION}
                others = [p for p in operation.get("parameters", []) if p.get("name") not in names]
                operation["parameters"] = [*_PAGINATION, *others]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            component = components.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
            if component.get("required") or component.get("oneOf") or component.get("anyOf"):
                operation["requestBody"]["required"] = True
            errors = dict(_COMMON_ERRORS)
            if method in ("post", "put", "patch", "delete"):
                errors["409"] = _BODY_ERRORS["409"]
            if "requestBody" in operation or method in ("post", "put", "patch"):
                errors["413"] = _BODY_ERRORS["413"]
                errors["415"] = _BODY_ERRORS["415"]
            errors.update(operation.pop("x-error-statuses", {}))
            for status, description in errors.items():
                operation["responses"].setdefault(status, _error_response(description))
    return result
