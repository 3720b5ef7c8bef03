"""Does a new OpenAPI document break clients of an old one?

`breaking_changes(old, new)` lists what a client written against `old` would trip over in
`new`: an operation removed; a response field removed (or renamed, which is the same);
a changed type or format; a response field that may now be null; in what clients send
(body fields at any depth, and parameters): a field or parameter no longer accepted, a new
required one, an enum value or null no longer accepted, a tighter bound (maxLength,
maximum, ...). Additions, and new enum values in responses, are not breaking.
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


def _merged(document: dict, schema: dict | None) -> dict:
    """The schema with its $ref followed and a single allOf (spectacular's way of adding
    nullable or a description to a reference) folded in."""
    schema = _resolve(document, schema)
    if len(schema.get("allOf", [])) == 1:
        schema = _resolve(document, schema["allOf"][0]) | {k: v for k, v in schema.items() if k != "allOf"}
    return schema


def _type_or_format_changed(old: dict, new: dict, where: str, problems: list[str]) -> bool:
    old_type, new_type = _type(old), _type(new)
    if old_type and new_type and old_type != new_type:
        problems.append(f"{where}: type changed from {old_type} to {new_type}")
        return True
    if old.get("format") != new.get("format") and old_type:
        problems.append(f"{where}: format changed from {old.get('format')} to {new.get('format')}")
        return True
    return False


def _compare_children(
    compare,
    old_doc,
    new_doc,
    old,
    new,
    where: str,
    problems: list[str],
    depth: int,
    *,
    missing: str,
    inputs=False,
) -> None:
    """`compare` each property of `old` (and an array's items) with its counterpart in
    `new`; a property `new` lacks is reported as `missing`. For inputs, read-only
    properties are not something a client sends."""
    new_properties = new.get("properties", {})
    for name, old_property in old.get("properties", {}).items():
        if inputs and _merged(old_doc, old_property).get("readOnly"):
            continue
        if name not in new_properties:
            problems.append(f"{where}.{name}: {missing}")
            continue
        compare(old_doc, new_doc, old_property, new_properties[name], f"{where}.{name}", problems, depth + 1)
    if _type(old) == "array":
        compare(old_doc, new_doc, old.get("items"), new.get("items"), f"{where}[]", problems, depth + 1)


def _compare_response(old_doc, new_doc, old, new, where: str, problems: list[str], depth: int = 0) -> None:
    if depth > 12:
        return
    old, new = _merged(old_doc, old), _merged(new_doc, new)
    if _type_or_format_changed(old, new, where, problems):
        return
    if new.get("nullable") and not old.get("nullable"):
        problems.append(f"{where}: may now be null")
    _compare_children(
        _compare_response, old_doc, new_doc, old, new, where, problems, depth, missing="removed"
    )


# Bounds whose tightening refuses input that was valid: a smaller upper or a larger lower bound.
_UPPER_BOUNDS = ("maxLength", "maximum", "maxItems", "exclusiveMaximum")
_LOWER_BOUNDS = ("minLength", "minimum", "minItems", "exclusiveMinimum")


def _branches(document: dict, schema: dict) -> list[dict]:
    """The alternatives of a union without a type of its own (anyOf/oneOf: a date or a
    date-time or empty), else the schema itself."""
    union = schema.get("anyOf") or schema.get("oneOf")
    if union and "type" not in schema:
        return [_merged(document, branch) for branch in union]
    return [schema]


def _compare_union(old_doc, new_doc, old, new, where: str, problems: list[str], depth: int) -> None:
    """Every form the old schema accepted must still be accepted by a form of the new one,
    compared with the closest one (the same type, the same format if there is one)."""
    new_branches = _branches(new_doc, new)
    for branch in _branches(old_doc, old):
        candidates = [b for b in new_branches if _type(b) == _type(branch) or _type(b) is None]
        if not candidates:
            problems.append(f"{where}: no longer accepts {_type(branch)}")
            continue
        attempts = []
        for candidate in candidates:
            found: list[str] = []
            _compare_input(old_doc, new_doc, branch, candidate, where, found, depth + 1)
            attempts.append(found)
        problems.extend(min(attempts, key=len))


def _compare_input(old_doc, new_doc, old, new, where: str, problems: list[str], depth: int = 0) -> None:
    """What a client sends (body fields and parameters): everything it could send before
    must still be accepted, with the same meaning."""
    if depth > 12:
        return
    old, new = _merged(old_doc, old), _merged(new_doc, new)
    if len(_branches(old_doc, old)) > 1 or len(_branches(new_doc, new)) > 1:
        _compare_union(old_doc, new_doc, old, new, where, problems, depth)
        return
    if _type_or_format_changed(old, new, where, problems):
        return
    if "pattern" in new and new["pattern"] != old.get("pattern"):
        # Whether one pattern accepts all another did cannot be decided here: any change is
        # reported, and a change that only documents an old rule is a reviewed refresh.
        problems.append(f"{where}: pattern changed from {old.get('pattern')!r} to {new['pattern']!r}")
    if old.get("nullable") and not new.get("nullable"):
        problems.append(f"{where}: no longer accepts null")
    dropped = set(old.get("enum", [])) - set(new.get("enum", old.get("enum", [])))
    if dropped:
        problems.append(f"{where}: no longer accepts {sorted(dropped, key=str)}")
    for keyword in _UPPER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            problems.append(f"{where}: {keyword} narrowed from {old.get(keyword)} to {new[keyword]}")
    for keyword in _LOWER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            problems.append(f"{where}: {keyword} narrowed from {old.get(keyword)} to {new[keyword]}")
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(newly_required):
        problems.append(f"{where}.{name}: new required field")
    _compare_children(
        _compare_input,
        old_doc,
        new_doc,
        old,
        new,
        where,
        problems,
        depth,
        missing="no longer accepted",
        inputs=True,
    )


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
            new_params = {(p["in"], p["name"]): p for p in new_op.get("parameters", [])}
            for key, param in new_params.items():
                was_required = old_params.get(key, {}).get("required", False)
                if param.get("required") and not was_required:
                    problems.append(f"{label}: new required {param['in']} parameter {param['name']!r}")
            for key, param in old_params.items():
                where = f"{label}: {param['in']} parameter {param['name']!r}"
                if key not in new_params:
                    problems.append(f"{where} removed")
                    continue
                _compare_input(old, new, param.get("schema"), new_params[key].get("schema"), where, problems)
            old_body, new_body = old_op.get("requestBody"), new_op.get("requestBody")
            if new_body and new_body.get("required") and not (old_body and old_body.get("required")):
                problems.append(f"{label}: request body now required")
            if old_body and new_body:
                _compare_input(
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
