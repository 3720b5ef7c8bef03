"""The one JSON parser of the API. It refuses, before anything reaches a serializer, what
Python's json module would accept but the rest of the stack cannot hold: nesting deep enough
to exhaust the recursion limit, the same key twice (the last would silently win), NaN and
Infinity, and strings PostgreSQL or UTF-8 cannot store (NUL, lone surrogates)."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework import exceptions as drf
from rest_framework.parsers import BaseParser

from nexus.api.errors import MalformedRequest, fields_error

MAX_DEPTH = 64

# Strings are removed before brackets are counted, so "[[[" inside a value is not nesting.
# The repetition is possessive and an unterminated string runs to the end of the body, so
# a match never fails and never restarts at a later quote: one pass over the body (a
# backtracking form rescanned the rest from every quote of `"\"\"\"…`, quadratic time).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise MalformedRequest(f"{name} is not a JSON number.", details={"value": name})


def _check_depth(text: str) -> None:
    depth = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise MalformedRequest(
                    f"JSON is nested more than {MAX_DEPTH} levels deep.", details={"max_depth": MAX_DEPTH}
                )
        else:
            depth -= 1


def _bad_string(value: str) -> str | None:
    match = _UNSTORABLE.search(value)
    if match is None:
        return None
    return "NUL characters are not allowed." if match.group() == "\x00" else "Unpaired surrogate character."


def find_unstorable(data: Any, path: str = "") -> tuple[str, str] | None:
    """The dotted path and reason of the first string (key or value) that cannot be stored."""
    if isinstance(data, str):
        reason = _bad_string(data)
        return (path or "body", reason) if reason else None
    if isinstance(data, dict):
        for key, value in data.items():
            child = f"{path}.{key}" if path else str(key)
            reason = _bad_string(key)
            if reason:
                return (path or "body", f"Key {key!r}: {reason}")
            found = find_unstorable(value, child)
            if found:
                return found
    if isinstance(data, list):
        for index, value in enumerate(data):
            found = find_unstorable(value, f"{path}.{index}" if path else str(index))
            if found:
                return found
    return None


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise MalformedRequest("The body is not valid UTF-8 JSON.") from exc
        _check_depth(text)
        try:
            data = json.loads(text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant)
        except _DuplicateKey as exc:
            # The key is echoed back, so it must be encodable (a lone surrogate is not).
            key = exc.key.encode("utf-8", "backslashreplace").decode("utf-8")
            raise MalformedRequest(
                f"The key {key!r} appears more than once in one object.",
                details={"duplicate_key": key},
            ) from exc
        except RecursionError as exc:  # a backstop: the depth check should have caught it
            raise MalformedRequest("JSON is nested too deeply.", details={"max_depth": MAX_DEPTH}) from exc
        except ValueError as exc:
            raise drf.ParseError(f"JSON parse error - {exc}") from exc
        found = find_unstorable(data)
        if found:
            field, reason = found
            raise fields_error({field: [reason]})
        return data
