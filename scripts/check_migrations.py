"""The migration check (`make migrations-check`): fails, with one line per problem, on

  1. two leaf migrations in one app (a conflict: two branches each added a migration);
  2. a model change with no migration (what `makemigrations --check --dry-run` reports);
  3. a migration that fails on an empty database: a database of its own is created on the
     server named by DATABASE_URL, and there the public schema is migrated, then one
     organisation schema (by `migrate_schemas --tenant`, as a deploy migrates the existing
     ones), then the template new organisations are cloned from (`sync_template_schema`);
     an organisation created the usual way (a clone of that template) must then have the
     same tables, columns, constraints, indexes and recorded migrations as the one
     migrated directly. The database is dropped at the end, whatever happened.

    python scripts/check_migrations.py [--no-apply]

The first two need no database and run first, so a conflict fails in seconds; --no-apply
stops after them. Exit status: 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import secrets
import signal
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The names of what this check creates in its own database.
MIGRATED_ORG_SCHEMA = "org_migration_check"
CLONE_ORG_NAME = "Migration check clone"
# PostgreSQL truncates identifiers past 63 bytes; the random part must survive that.
_MAX_DATABASE_NAME = 63


class CheckFailed(Exception):
    """A problem found by a check; its message is the one line reported."""


def _scratch_database_url(database_url: str) -> tuple[str, str]:
    """DATABASE_URL with its database name replaced by a new, unique one."""
    parts = urlsplit(database_url)
    # Quoted into CREATE and DROP DATABASE, so only plain characters are kept.
    base = re.sub(r"[^A-Za-z0-9_]", "_", parts.path.lstrip("/")) or "nexus"
    suffix = f"_migcheck_{secrets.token_hex(4)}"
    name = base[: _MAX_DATABASE_NAME - len(suffix)] + suffix
    return urlunsplit(parts._replace(path=f"/{name}")), name


# --- 1 and 2: on disk only -----------------------------------------------------------------


def check_conflicts() -> list[str]:
    from django.db.migrations.loader import MigrationLoader

    # No connection: the graph is read from the migration files alone.
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return [
        f"conflict: app '{app}' has {len(names)} leaf migrations: {', '.join(names)} "
        f"(merge them: python manage.py makemigrations --merge {app})"
        for app, names in sorted(loader.detect_conflicts().items())
    ]


def check_missing() -> list[str]:
    """What `makemigrations --check --dry-run` finds, without its database round trip
    (the history it checks there belongs to whichever database DATABASE_URL names)."""
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.questioner import NonInteractiveMigrationQuestioner
    from django.db.migrations.state import ProjectState

    questions: list[str] = []
    loader = MigrationLoader(None, ignore_no_migrations=True)
    questioner = NonInteractiveMigrationQuestioner(
        specified_apps=set(), dry_run=True, verbosity=1, log=questions.append
    )
    autodetector = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps), questioner)
    try:
        changes = autodetector.changes(graph=loader.graph)
    except SystemExit:
        # The questioner exits when a migration could only be written by answering a
        # question (a new non-null field with no default, say).
        reason = " ".join(" ".join(questions).split()) or "makemigrations needs an answer."
        return [f"missing migration: a model change has no migration, and makemigrations says: {reason}"]
    problems = []
    for app, migrations in sorted(changes.items()):
        for migration in migrations:
            operations = "; ".join(operation.describe() for operation in migration.operations)
            problems.append(
                f"missing migration: app '{app}' has model changes with no migration "
                f"(makemigrations would write {migration.name}: {operations})"
            )
    return problems


# --- 3: on an empty database ---------------------------------------------------------------


_CONSTRAINT_KINDS = {"p": "primary key", "f": "foreign key", "u": "unique", "c": "check", "x": "exclusion"}


def _schema_shape(schema: str) -> dict[str, set[str]]:
    """What a schema holds, by name: enough to tell two organisation schemas apart."""
    from django.db import connection

    queries = {
        "table": (
            "SELECT table_name, lower(table_type) FROM information_schema.tables WHERE table_schema = %s",
            lambda table, kind: f"{table} ({kind})",
        ),
        "column": (
            "SELECT table_name, column_name, data_type, is_nullable, is_identity "
            "FROM information_schema.columns WHERE table_schema = %s",
            lambda table, column, kind, nullable, identity: (
                f"{table}.{column} ({kind}{', null' if nullable == 'YES' else ''}"
                f"{', identity' if identity == 'YES' else ''})"
            ),
        ),
        "constraint": (
            "SELECT cl.relname, co.conname, co.contype FROM pg_constraint co "
            "JOIN pg_class cl ON cl.oid = co.conrelid "
            "JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = %s",
            lambda table, name, kind: f"{table}.{name} ({_CONSTRAINT_KINDS.get(kind, kind)})",
        ),
        "index": (
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = %s",
            lambda table, name: f"{table}.{name}",
        ),
        "trigger": (
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND NOT t.tgisinternal",
            lambda table, name: f"{table}.{name}",
        ),
    }
    shape = {}
    with connection.cursor() as cursor:
        for kind, (sql, describe) in queries.items():
            cursor.execute(sql, [schema])
            shape[kind] = {describe(*row) for row in cursor.fetchall()}
        # The schema names compared here are this script's own, never input.
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')  # noqa: S608  # nosec B608
        shape["recorded migration"] = {f"{app}.{name}" for app, name in cursor.fetchall()}
    return shape


def _shape_differences(left_name: str, left: dict, right_name: str, right: dict) -> list[str]:
    differences = []
    for kind in left:
        for label, only in ((left_name, left[kind] - right[kind]), (right_name, right[kind] - left[kind])):
            if only:
                shown = ", ".join(sorted(only)[:5])
                more = f" and {len(only) - 5} more" if len(only) > 5 else ""
                differences.append(f"{kind}s only in {label}: {shown}{more}")
    return differences


def _step(label: str, action) -> None:
    """Run one stage with the migrate commands' progress captured, so a failure names the
    migration it stopped in."""
    progress = io.StringIO()
    try:
        # django-tenants writes each schema's progress to sys.stdout itself.
        with contextlib.redirect_stdout(progress):
            action()
    except Exception as exc:  # any failure of a migration is the finding, reported as such
        traceback.print_exc()
        applying = re.findall(r"Applying (\S+?)\.\.\.", progress.getvalue())
        where = f" in {applying[-1]}" if applying else ""
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise CheckFailed(f"apply: {label} failed{where}: {type(exc).__name__}: {first_line}") from exc


def check_apply(database_name: str) -> list[str]:
    from django.core.management import call_command
    from django.db import connection, connections

    from tenants.models import Organisation
    from tenants.schema_template import template_schema_name
    from tenants.services import organisation_create

    # The same path Django's test runner takes to create its database: a connection to the
    # server's maintenance database with this database's credentials.
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{database_name}"')
    try:

        def migrate_public():
            call_command("migrate_schemas", shared=True, interactive=False, verbosity=1)

        def migrate_organisation():
            # The row alone (auto_create_schema off for this instance), then the schema by
            # every tenant migration, as a deploy's `migrate_schemas` brings one forward.
            org = Organisation(
                name="Migration check", slug="migration-check", schema_name=MIGRATED_ORG_SCHEMA
            )
            org.auto_create_schema = False
            org.save(verbosity=0)
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE SCHEMA "{MIGRATED_ORG_SCHEMA}"')
            call_command("migrate_schemas", tenant=True, interactive=False, verbosity=1)

        def migrate_template():
            # Its migrate_schemas runs one level quieter than the command.
            call_command("sync_template_schema", verbosity=2)

        clone: list[Organisation] = []

        def create_organisation():
            clone.append(organisation_create(name=CLONE_ORG_NAME))

        _step("the public schema (migrate_schemas --shared)", migrate_public)
        _step(
            f"an organisation schema (migrate_schemas --tenant, {MIGRATED_ORG_SCHEMA})", migrate_organisation
        )
        _step(f"the template schema (sync_template_schema, {template_schema_name()})", migrate_template)
        _step("an organisation cloned from the template (organisation_create)", create_organisation)

        connection.set_schema_to_public()
        migrated = _schema_shape(MIGRATED_ORG_SCHEMA)
        if not migrated["table"]:
            return [f"apply: {MIGRATED_ORG_SCHEMA} has no tables after its migrations"]
        problems = []
        for name in (template_schema_name(), clone[0].schema_name):
            for difference in _shape_differences(MIGRATED_ORG_SCHEMA, migrated, name, _schema_shape(name)):
                problems.append(f"apply: {name} differs from the migrated organisation schema: {difference}")
        return problems
    finally:
        connections.close_all()
        try:
            with connection._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
        except Exception as exc:  # reported, without hiding what the checks found
            print(f"could not drop the scratch database {database_name}: {exc}", file=sys.stderr)
        connections.close_all()


# --- the run -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-apply",
        action="store_true",
        help="Only the checks that need no database (conflicts, missing migrations).",
    )
    args = parser.parse_args(argv)

    # Settings refuse a missing SECRET_KEY for a server; this check serves nothing.
    os.environ.setdefault("NEXUS_TESTING", "true")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus.settings")
    database_name = None
    if not args.no_apply:
        # Chosen before Django reads its settings, so no connection of this process can
        # ever reach the database DATABASE_URL names: only the scratch one and the
        # server's maintenance database.
        url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/nexus")
        os.environ["DATABASE_URL"], database_name = _scratch_database_url(url)

    # A CI runner cancelling the job sends SIGTERM: unwind, so the database is dropped.
    def stop(*_):
        print("Migration check stopped (SIGTERM)", file=sys.stderr)
        sys.exit(143)

    signal.signal(signal.SIGTERM, stop)

    import django

    django.setup()

    started = time.monotonic()
    problems: list[str] = []
    timings: list[str] = []

    def run(label: str, check, *check_args) -> None:
        began = time.monotonic()
        try:
            found = check(*check_args)
        except CheckFailed as exc:
            found = [str(exc)]
        except Exception as exc:  # a migration file that cannot be loaded, say
            traceback.print_exc()
            found = [f"{label}: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"]
        problems.extend(found)
        timings.append(f"{label} {time.monotonic() - began:.1f}s")

    run("conflicts", check_conflicts)
    # A missing migration is only meaningful on a graph with one leaf per app.
    if not problems:
        run("missing migrations", check_missing)
    if not problems and database_name:
        run(f"empty database {database_name}", check_apply, database_name)

    summary = f"({', '.join(timings)}; {time.monotonic() - started:.1f}s in all)"
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"Migration check failed: {len(problems)} problem(s) {summary}", file=sys.stderr)
        return 1
    checked = "no conflicts, no missing migrations"
    if database_name:
        checked += ", every migration applies to an empty database"
    print(f"Migration check passed: {checked} {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
