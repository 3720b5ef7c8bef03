"""The template schema new organisations are cloned from.

Rule: a clone is only taken from a template whose recorded migrations match every
migration on disk. The template is not an organisation row, so `migrate_schemas` never
touches it; instead every clone first checks it (one query) and migrates it forward under
an advisory lock when it is behind. A stale template can therefore never produce an
organisation whose migrations are recorded but whose tables are missing.

The clone itself is a handful of plain statements per table (CREATE TABLE ... LIKE ...
INCLUDING ALL, the rows, the foreign keys), run in the caller's transaction. The generic
pg-clone-schema function that ships with django-tenants took 1.3 s for two tables here;
this takes a few milliseconds per table.
"""

from __future__ import annotations

from functools import lru_cache

import structlog
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django_tenants.postgresql_backend.base import _check_schema_name
from django_tenants.utils import schema_exists

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every process that builds the template.
_TEMPLATE_LOCK_ID = 7_310_412_001


def template_schema_name() -> str:
    return settings.TENANT_TEMPLATE_SCHEMA


@lru_cache(maxsize=1)
def _expected_migrations() -> frozenset[tuple[str, str]]:
    # Read from disk only (no connection): the set is fixed for the life of the process.
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def template_missing_migrations() -> set[tuple[str, str]]:
    """Migrations on disk that the template schema has not applied (all of them when the
    template does not exist)."""
    schema = template_schema_name()
    if not schema_exists(schema):
        return set(_expected_migrations())
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [f'"{schema}".django_migrations'])
        if cursor.fetchone()[0] is None:
            return set(_expected_migrations())
        # The schema name is our own setting, never input.
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')  # noqa: S608  # nosec B608
        applied = set(cursor.fetchall())
    return set(_expected_migrations()) - applied


def template_sync(*, verbosity: int = 0) -> bool:
    """Bring the template schema up to date. Returns True when anything was changed.

    Run on every deploy (`manage.py sync_template_schema`), and by the first clone after a
    migration was added. Safe to run concurrently: the work happens under a lock.
    """
    schema = template_schema_name()
    connection.set_schema_to_public()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_TEMPLATE_LOCK_ID])
        missing = template_missing_migrations()
        if not missing:
            return False
        log.info("template_schema.migrating", schema=schema, missing=len(missing))
        if not schema_exists(schema):
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE SCHEMA "{schema}"')
        call_command(
            "migrate_schemas",
            tenant=True,
            schema_name=schema,
            interactive=False,
            verbosity=verbosity,
        )
    connection.set_schema_to_public()
    return True


class TemplateNotCloneable(RuntimeError):
    """The template holds something this cloner does not copy faithfully."""


def _clone_statements(cursor, template: str, target: str) -> list[str]:
    """The SQL that copies `template` into a new schema `target`. Identifiers are
    interpolated, so both names are checked first; every other name comes from the
    database's own catalog of the template."""
    _check_schema_name(template)
    _check_schema_name(target)
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
        [template],
    )
    tables = [row[0] for row in cursor.fetchall()]
    # A serial column's default would still point at the template's sequence after LIKE;
    # Django creates identity columns, so refuse rather than share a sequence.
    cursor.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND column_default LIKE 'nextval(%%'",
        [template],
    )
    serial = cursor.fetchall()
    if serial:
        raise TemplateNotCloneable(f"serial columns in the template: {serial}")
    cursor.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND is_identity = 'YES'",
        [template],
    )
    identity_columns = cursor.fetchall()
    # Constraints and indexes are recreated by name (LIKE ... INCLUDING INDEXES would invent
    # new names, and a later migration that drops one by name would then fail). With only
    # `public` on the search path, references to the template's own tables come back
    # schema-qualified (rewritten to the target below) and references to shared tables come
    # back unqualified (they resolve to public, as they should).
    cursor.execute(
        "SELECT cl.relname, co.conname, co.contype, pg_get_constraintdef(co.oid) "
        "FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid "
        "JOIN pg_namespace n ON n.oid = co.connamespace "
        "WHERE n.nspname = %s AND co.contype IN ('p', 'u', 'c', 'x', 'f') "
        "ORDER BY co.contype = 'f', cl.relname, co.conname",
        [template],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid) "
        "ORDER BY 1",
        [template],
    )
    indexes = [row[0] for row in cursor.fetchall()]
    # Triggers written by migrations (not the internal ones behind foreign keys). Their
    # functions live in public, so only the table they are on needs rewriting.
    cursor.execute(
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal "
        "ORDER BY t.tgname",
        [template],
    )
    triggers = [row[0] for row in cursor.fetchall()]

    qualified = f"{template}."
    statements = [f'CREATE SCHEMA "{target}"']
    for table in tables:
        statements.append(
            f'CREATE TABLE "{target}"."{table}" (LIKE "{template}"."{table}" '
            "INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE "
            "INCLUDING COMMENTS)"
        )
        copy_rows = f'INSERT INTO "{target}"."{table}" SELECT * FROM "{template}"."{table}"'  # noqa: S608  # nosec B608
        statements.append(copy_rows)
    for table, column in identity_columns:
        sequence = f"pg_get_serial_sequence('\"{target}\".\"{table}\"', '{column}')"
        next_value = f'COALESCE((SELECT MAX("{column}") FROM "{target}"."{table}"), 0) + 1'  # noqa: S608  # nosec B608
        statements.append(f"SELECT setval({sequence}, {next_value}, false)")
    for table, name, _kind, definition in constraints:
        definition = definition.replace(f"REFERENCES {qualified}", f'REFERENCES "{target}".')
        statements.append(f'ALTER TABLE "{target}"."{table}" ADD CONSTRAINT "{name}" {definition}')
    for definition in indexes:
        statements.append(definition.replace(f" ON {qualified}", f' ON "{target}".', 1))
    for definition in triggers:
        statements.append(definition.replace(f" ON {qualified}", f' ON "{target}".', 1))
    return statements


def schema_create_from_template(schema_name: str) -> None:
    """Create `schema_name` as a copy of the (current) template: tables, identity
    sequences, indexes, constraints, and the rows (django_migrations among them) that say
    those tables exist. Runs inside the caller's transaction."""
    if template_missing_migrations():
        template_sync()
    connection.set_schema_to_public()
    with transaction.atomic(), connection.cursor() as cursor:
        # One round trip for the whole script (no parameters, so several statements are fine).
        cursor.execute(";\n".join(_clone_statements(cursor, template_schema_name(), schema_name)))
