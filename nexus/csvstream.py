"""CSV written row by row as a response streams, with every cell safe to open in a
spreadsheet: a cell that starts with what a spreadsheet takes for a formula (= + - @ tab,
carriage return) is prefixed with a single quote, so it shows as text and never runs."""

from __future__ import annotations

import csv

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """The value as a spreadsheet shows it: text, never a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


class _Line:
    """A file-like object for csv.writer that hands back the line it was given."""

    def write(self, value: str) -> str:
        return value


def line_writer():
    """A csv writer whose writerow returns the line (to yield it) instead of writing it."""
    return csv.writer(_Line())
