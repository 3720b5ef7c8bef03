"""One read across every organisation's schema, for operators (the metrics endpoint, the
admin's operations page). Never for a request made by an organisation.

Each organisation's data lives in its own schema, so "how many jobs are waiting, over all
organisations" is a query per schema. This runs them as one UNION ALL statement, one
round trip, bounded by a statement timeout, so a scrape costs the same few milliseconds
whatever the number of organisations. Its cost grows with them (planning a part per
schema): bench/metrics_scrape.py measures it.
"""

from __future__ import annotations

from django.db import connection, transaction

from tenants.selectors import organisations_active

# An operator's read must never hold a connection long: past this the statement is
# cancelled and the caller reports the read as failed.
STATEMENT_TIMEOUT_MS = 2000


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
    parts: list[str] = []
    params_all: list = []
    for org_id, slug, schema in organisations:
        query = per_schema_sql.format(schema=connection.ops.quote_name(schema))
        # The query is the caller's literal SQL with a quoted schema name; the organisation's
        # id and slug go in as parameters.
        parts.append(f"SELECT %s::text, %s::text, q.* FROM ({query}) AS q")  # noqa: S608  # nosec B608
        params_all += [str(org_id), slug, *params]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {int(timeout_ms or STATEMENT_TIMEOUT_MS)}")
        cursor.execute(" UNION ALL ".join(parts), params_all)
        return cursor.fetchall()
