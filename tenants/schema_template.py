"""The template schema new organisations are cloned from.

Rule: a clone is only taken from a template whose recorded migrations match every
migration on disk. The template is not an organisation row, so `migrate_schemas` never
touches it; instead every clone first checks it (one query) and migrates it forward under
an advisory lock when it is behind. A stale template can therefore never produce an
organisation whose migrations are recorded but whose tables are missing.
"""

from __future__ import annotations

from functools import lru_cache

import structlog
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django_tenants.clone import CloneSchema
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
        cursor.execute(
            "SELECT to_regclass(%s)", [f'"{schema}".django_migrations']
        )
        if cursor.fetchone()[0] is None:
            return set(_expected_migrations())
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')  # nosec B608
        applied = set(cursor.fetchall())
    return set(_expected_migrations()) - applied


def _clone_function_installed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname = 'clone_schema'"
        )
        return cursor.fetchone() is not None


def template_sync(*, force_function: bool = False, verbosity: int = 0) -> bool:
    """Bring the template schema up to date. Returns True when anything was changed.

    Run on every deploy (`manage.py sync_template_schema`), and by the first clone after a
    migration was added. Safe to run concurrently: the work happens under a lock.
    """
    schema = template_schema_name()
    connection.set_schema_to_public()
    changed = False
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_TEMPLATE_LOCK_ID])
        if force_function or not _clone_function_installed():
            CloneSchema()._create_clone_schema_function()
            changed = True
        missing = template_missing_migrations()
        if missing:
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
            changed = True
    connection.set_schema_to_public()
    return changed


def schema_create_from_template(schema_name: str) -> None:
    """Create `schema_name` as a copy of the (current) template: tables, sequences,
    indexes, constraints and the django_migrations rows that say they exist."""
    if template_missing_migrations() or not _clone_function_installed():
        template_sync()
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT clone_schema(%s, %s, 'DATA')", [template_schema_name(), schema_name]
        )
