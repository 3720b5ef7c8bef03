"""Bulk writes for the ETL: COPY into a temporary staging table, then one INSERT ... SELECT
with ON CONFLICT. Building a model instance and a many-parameter INSERT per row was most of
the cost of a run (2,600 rows/s); this path is what makes 100,000-row files quick.

Runs on the request's or task's connection, inside the caller's transaction, in the
organisation's schema (the staging tables are temporary: pg_temp is always searched first).
"""

from __future__ import annotations

from django.db import connection

RAW_COLUMNS = ("source_id", "run_id", "external_id", "content_hash", "payload", "fetched_at")
RECORD_COLUMNS = (
    "source_id",
    "external_id",
    "title",
    "body",
    "url",
    "author",
    "published_at",
    "tags",
    "extra",
    "content_hash",
    "first_seen_run_id",
    "last_updated_run_id",
    "created_at",
    "updated_at",
)
RECORD_UPDATED_ON_CONFLICT = (
    "title",
    "body",
    "url",
    "author",
    "published_at",
    "tags",
    "extra",
    "content_hash",
    "last_updated_run_id",
    "updated_at",
)


def pg_text_array(items: list[str]) -> str:
    """A text[] literal: {"a","b \\"quoted\\""}."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def _staging(cursor, name: str, like: str, columns: tuple[str, ...]) -> None:
    # Emptied by every commit; created once per connection.
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS "  # noqa: S608  # nosec B608
        f"SELECT {', '.join(columns)} FROM {like} WITH NO DATA"
    )
    cursor.execute(f"DELETE FROM {name}")  # noqa: S608  # nosec B608


def _copy(cursor, table: str, columns: tuple[str, ...], lines) -> None:
    """COPY already formatted lines (see etl.pipeline): the formatting happens in the thread
    that prepares batches, not here."""
    raw_cursor = cursor.cursor  # the psycopg cursor under Django's wrapper
    with raw_cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write("".join(lines))


def insert_raw(table: str, source_id, lines_by_hash: dict[str, str]) -> int:
    """Raw rows (COPY lines of RAW_COLUMNS, keyed by content hash); those already stored for
    the source are skipped, the rest are copied straight in. Straight COPY is safe because
    a source never runs twice at once (the run's advisory lock), so nothing else inserts
    this source's rows meanwhile; the unique index stays the backstop."""
    if not lines_by_hash:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT content_hash FROM {table} WHERE source_id = %s AND content_hash = ANY(%s)",  # noqa: S608  # nosec B608
            [source_id, list(lines_by_hash)],
        )
        stored = {row[0] for row in cursor.fetchall()}
        fresh = [line for digest, line in lines_by_hash.items() if digest not in stored]
        if fresh:
            _copy(cursor, table, RAW_COLUMNS, fresh)
    return len(fresh)


def existing_hashes(source_id, external_ids: list[str]) -> dict[str, str]:
    if not external_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT external_id, content_hash FROM records WHERE source_id = %s AND external_id = ANY(%s)",
            [source_id, external_ids],
        )
        return dict(cursor.fetchall())


def insert_records(lines: list[str]) -> None:
    """Records not stored yet (the caller checked, under the run's lock): copied straight in."""
    if lines:
        with connection.cursor() as cursor:
            _copy(cursor, "records", RECORD_COLUMNS, lines)


def upsert_records(lines: list[str]) -> None:
    """Unified records as COPY lines of RECORD_COLUMNS; an existing (source, external id)
    is updated, keeping the run that first saw it."""
    if not lines:
        return
    stage = "etl_stage_records"
    with connection.cursor() as cursor:
        _staging(cursor, stage, "records", RECORD_COLUMNS)
        _copy(cursor, stage, RECORD_COLUMNS, lines)
        columns = ", ".join(RECORD_COLUMNS)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in RECORD_UPDATED_ON_CONFLICT)
        cursor.execute(
            f"INSERT INTO records ({columns}) SELECT {columns} FROM {stage} "  # noqa: S608  # nosec B608
            f"ON CONFLICT (source_id, external_id) DO UPDATE SET {updates}"
        )
