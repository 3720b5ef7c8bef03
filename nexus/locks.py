"""Transaction-scoped PostgreSQL advisory locks: what serialises two requests that would
otherwise both pass a check (a cap, "first of its domain") before either has written."""

from __future__ import annotations

from django.db import connection


def advisory_xact_lock(name: str) -> None:
    """Wait for, then hold until the current transaction ends, the lock called `name`."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
