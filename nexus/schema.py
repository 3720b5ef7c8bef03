"""OpenAPI: the auth extension for our JWT class, and a post-processing hook that wraps
every documented response in the envelope actually sent ({"data", "meta"} or
{"error", "meta"}), so the published schema matches the wire."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TenantJWTScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.TenantJWTAuthentication"
    name = "NexusBearerJWT"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


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
                if content is None or "schema" not in content:
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
