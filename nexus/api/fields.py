"""Serializer fields shared by every app, so one rule about what text may contain holds
everywhere. Control characters in a name or description break logs, CSV exports and
terminals and can disguise one name as another (bidi overrides); free text keeps only the
whitespace controls a paragraph needs."""

from __future__ import annotations

import re

from rest_framework import serializers

from nexus.api.errors import field_error

# Unicode category Cc plus the bidirectional embedding/override/isolate controls.
_CONTROL = "\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
# The same without tab (\x09), newline (\x0a) and carriage return (\x0d).
_CONTROL_EXCEPT_WHITESPACE = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
# What str.strip() removes, minus the control characters already refused above.
_SPACE = " \t\n\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# The OpenAPI documents publish these patterns (nexus.schema), so they are written in the
# subset of regular expressions JSON Schema and Python share.
PLAIN_TEXT_PATTERN = f"^[^{_CONTROL}]*$"
_FREE = f"[^{_CONTROL_EXCEPT_WHITESPACE}]"
_VISIBLE = f"[^{_CONTROL_EXCEPT_WHITESPACE}{_SPACE}]"
FREE_TEXT_PATTERN = f"^{_FREE}*{_VISIBLE}{_FREE}*$"


class PlainTextField(serializers.CharField):
    """A one-line human label (a name, a description): a string, no control characters."""

    default_error_messages = {
        "control_characters": "Control characters (including newlines and tabs) are not allowed.",
    }
    _forbidden = re.compile(f"[{_CONTROL}]")
    pattern = PLAIN_TEXT_PATTERN

    def to_internal_value(self, data):
        # A number is not a name: DRF would otherwise store 5 as "5".
        if not isinstance(data, str):
            self.fail("invalid")
        # Checked before DRF trims the ends, so "name\n" is refused as the document says.
        if self._forbidden.search(data):
            self.fail("control_characters")
        return super().to_internal_value(data)


class FreeTextField(PlainTextField):
    """Multi-line free text: newlines, carriage returns and tabs are fine, other controls
    are not. Text that is only whitespace is refused by the services that take it, so the
    published pattern requires one visible character."""

    default_error_messages = {
        "control_characters": (
            "Control characters other than newline, carriage return and tab are not allowed."
        ),
    }
    _forbidden = re.compile(f"[{_CONTROL_EXCEPT_WHITESPACE}]")
    pattern = FREE_TEXT_PATTERN


def plain_text(value: str, *, field: str) -> str:
    """The same rule as PlainTextField, for services that also take input from pages."""
    if re.search(f"[{_CONTROL}]", value):
        message = PlainTextField.default_error_messages["control_characters"]
        raise field_error(field, message)
    return value


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean and nothing else: DRF's BooleanField also takes 0, 1, "yes" and
    "off", which the published schema (`type: boolean`) does not allow."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)
