"""Serializer fields shared by every app, so one rule about what text may contain holds
everywhere. Control characters in a name or description break logs, CSV exports and
terminals and can disguise one name as another (bidi overrides); free text keeps only the
whitespace controls a paragraph needs."""

from __future__ import annotations

import re

from rest_framework import serializers

# Unicode category Cc plus the bidirectional embedding/override/isolate controls.
_ANY_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# The same without tab (\x09), newline (\x0a) and carriage return (\x0d).
_CONTROL_EXCEPT_WHITESPACE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class PlainTextField(serializers.CharField):
    """A one-line human label (a name, a description): a string, no control characters."""

    default_error_messages = {
        "control_characters": "Control characters (including newlines and tabs) are not allowed.",
    }
    _forbidden = _ANY_CONTROL

    def to_internal_value(self, data):
        # A number is not a name: DRF would otherwise store 5 as "5".
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if self._forbidden.search(value):
            self.fail("control_characters")
        return value


class FreeTextField(PlainTextField):
    """Multi-line free text: newlines, carriage returns and tabs are fine, other controls
    are not."""

    default_error_messages = {
        "control_characters": (
            "Control characters other than newline, carriage return and tab are not allowed."
        ),
    }
    _forbidden = _CONTROL_EXCEPT_WHITESPACE
