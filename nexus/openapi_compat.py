"""Does a new OpenAPI document break clients of an old one?

`breaking_changes(old, new)` lists what a client written against `old` would trip over in
`new`: an operation removed; a response field removed (or renamed, which is the same);
a changed type; a response field that may now be null; a new required request field or
parameter; a request enum value no longer accepted. Additions are not breaking.
"""

from __future__ import annotations

from typing import Any

HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def _resolve(document: dict, schema: dict | None) -> dict:
    seen = 0
    while schema and "$ref" in schema and seen < 20:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document.get("components", {}).get("schemas", {}).get(name, {})
        seen += 1
    return schema or {}


def _type(schema: dict) -> Any:
    if "type" in schema:
        return schema["type"]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return "ref"
    return None


def _compare_response(old_doc, new_doc, old, new, where: str, problems: list[str], depth: int = 0) -> None:
    if depth > 12:
        return
    old, new = _resolve(old_doc, old), _resolve(new_doc, new)
    if len(old.get("allOf", [])) == 1:
        old = _resolve(old_doc, old["allOf"][0]) | {k: v for k, v in old.items() if k != "allOf"}
    if len(new.get("allOf", [])) == 1:
        new = _resolve(new_doc, new["allOf"][0]) | {k: v for k, v in new.items() if k != "allOf"}
    old_type, new_type = _type(old), _type(new)
    if old_type and new_type and old_type != new_type:
        problems.append(f"{where}: type changed from {old_type} to {new_type}")
        return
    if new.get("nullable") and not old.get("nullable"):
        problems.append(f"{where}: may now be null")
    for name, old_property in old.get("properties", {}).items():
        new_properties = new.get("properties", {})
        if name not in new_properties:
            problems.append(f"{where}.{name}: removed")
            continue
        _compare_response(
            old_doc, new_doc, old_property, new_properties[name], f"{where}.{name}", problems, depth + 1
        )
    if old_type == "array":
        _compare_response(
            old_doc, new_doc, old.get("items"), new.get("items"), f"{where}[]", problems, depth + 1
        )


def _compare_request(old_doc, new_doc, old, new, where: str, problems: list[str]) -> None:
    old, new = _resolve(old_doc, old), _resolve(new_doc, new)
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(newly_required):
        problems.append(f"{where}.{name}: new required field")
    for name, old_property in old.get("properties", {}).items():
        new_property = _resolve(new_doc, new.get("properties", {}).get(name))
        old_property = _resolve(old_doc, old_property)
        if not new_property:
            continue  # an input no longer read is ignored by the server, not an error
        if _type(old_property) and _type(new_property) and _type(old_property) != _type(new_property):
            problems.append(
                f"{where}.{name}: type changed from {_type(old_property)} to {_type(new_property)}"
            )
        dropped = set(old_property.get("enum", [])) - set(
            new_property.get("enum", old_property.get("enum", []))
        )
        if dropped:
            problems.append(f"{where}.{name}: no longer accepts {sorted(dropped)}")


def _json_schema(operation_part: dict) -> dict | None:
    return operation_part.get("content", {}).get("application/json", {}).get("schema")


def breaking_changes(old: dict, new: dict) -> list[str]:
    problems: list[str] = []
    for path, old_item in old.get("paths", {}).items():
        for method, old_op in old_item.items():
            if method not in HTTP_METHODS:
                continue
            new_op = new.get("paths", {}).get(path, {}).get(method)
            label = f"{method.upper()} {path}"
            if new_op is None:
                problems.append(f"{label}: operation removed")
                continue
            old_params = {(p["in"], p["name"]): p for p in old_op.get("parameters", [])}
            for param in new_op.get("parameters", []):
                key = (param["in"], param["name"])
                was_required = old_params.get(key, {}).get("required", False)
                if param.get("required") and not was_required:
                    problems.append(f"{label}: new required {param['in']} parameter {param['name']!r}")
            old_body, new_body = old_op.get("requestBody"), new_op.get("requestBody")
            if new_body and new_body.get("required") and not (old_body and old_body.get("required")):
                problems.append(f"{label}: request body now required")
            if old_body and new_body:
                _compare_request(
                    old, new, _json_schema(old_body), _json_schema(new_body), f"{label} body", problems
                )
            for status, old_response in old_op.get("responses", {}).items():
                new_response = new_op.get("responses", {}).get(status)
                if new_response is None:
                    problems.append(f"{label}: response {status} removed")
                    continue
                old_schema, new_schema = _json_schema(old_response), _json_schema(new_response)
                if old_schema and new_schema:
                    _compare_response(old, new, old_schema, new_schema, f"{label} {status}", problems)
    return problems
