"""One read across every organisation's schema, for operators (the metrics endpoint, the
admin's operations page). Never for a request made by an organisation.

Each organisation's data lives in its own schema, so "how many jobs are waiting, over all
organisations" is a query per schema. This runs them as UNION ALL statements of up to
SCHEMAS_PER_STATEMENT schemas each, each bounded by a statement timeout: one statement for a
hundred organisations, a few for a thousand. bench/metrics_scrape.py measures the cost.
"""

from __future__ import annotations

import re

from django.db import DatabaseError, connection, transaction

from tenants.selectors import organisations_active

# An operator's read must never hold a connection long: past this the statement is
# cancelled and the caller reports the read as failed.
STATEMENT_TIMEOUT_MS = 2000
# Planning a UNION grows faster than its parts (measured: 100 schemas 54 ms, 300 in one
# statement 322 ms), so the schemas are read this many to a statement.
SCHEMAS_PER_STATEMENT = 100
# What the product names schemas (org_<slug>): nothing that could leave a quoted name, or be
# read as a format field or a parameter placeholder.
_PLAIN_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class UnsafeSchemaName(DatabaseError):
    """An organisation's schema name is not plain: the read fails, as any failed read does
    (its callers report the part as unread; nothing answers 500)."""


def across_organisations(
    per_schema_sql: str, params: list | tuple = (), *, timeout_ms: int | None = None
) -> list[tuple]:
    """Rows of `per_schema_sql` run in every active organisation's schema, each prefixed with
    that organisation's (id, slug). The SQL names its tables as `{schema}.table`; the schema
    names come from the organisations table (quoted here), never from a caller. Values go in
    as `params` (`%s` placeholders, given once, bound in every schema's part); a literal
    percent sign is `%%`."""
    organisations = list(organisations_active().values_list("pk", "slug", "schema_name"))
    if not organisations:
        return []
    rows: list[tuple] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {int(timeout_ms or STATEMENT_TIMEOUT_MS)}")
        for start in range(0, len(organisations), SCHEMAS_PER_STATEMENT):
            sql, values = _union(per_schema_sql, params, organisations[start : start + SCHEMAS_PER_STATEMENT])
            cursor.execute(sql, values)
            rows += cursor.fetchall()
    return rows


def _union(per_schema_sql: str, params, organisations) -> tuple[str, list]:
    parts: list[str] = []
    values: list = []
    for org_id, slug, schema in organisations:
        # Names are made by the product (org_<slug>) and checked when created; a name that
        # is not a plain schema name fails the read rather than go into SQL text.
        if not _PLAIN_SCHEMA_NAME.fullmatch(schema):
            raise UnsafeSchemaName(f"organisation {org_id} has an invalid schema name")
        query = per_schema_sql.format(schema=connection.ops.quote_name(schema))
        # The query is the caller's literal SQL with a quoted schema name; the organisation's
        # id and slug go in as parameters.
        parts.append(f"SELECT %s::text, %s::text, q.* FROM ({query}) AS q")  # noqa: S608  # nosec B608
        values += [str(org_id), slug, *params]
    return " UNION ALL ".join(parts), values
