"""The migration check (scripts/check_migrations.py, docs/specs/delivery.md) on a copy of
the project: a second leaf migration in one app fails it, naming the app and both
migrations, and `makemigrations --merge` makes it pass; a model change without its
migration fails it; a migration that breaks on an empty database fails it, naming that
migration, and the database it made is gone afterwards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

ROOT = Path(__file__).resolve().parents[2]
APP = "webhooks"


@pytest.fixture
def project(tmp_path) -> Path:
    """The project's files (tracked, and new ones git does not ignore) in a temporary
    directory: what a clone of this change would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path / "project"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted in the work tree is still in the index
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def _run(project: Path, *args: str, database_url: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nexus.settings",
        "NEXUS_TESTING": "true",
        "LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def _check(project: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(project, "scripts/check_migrations.py", *args)


def _latest_and_parent(app: str) -> tuple[str, str]:
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    (leaf,) = graph.leaf_nodes(app)
    parent = next(p for p in graph.node_map[leaf].parents if p.key[0] == app).key
    return leaf[1], parent[1]


def _database_url_named(name: str) -> str:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/nexus")
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def test_second_leaf_migration_fails_the_check_until_merged(project, django_db_setup):
    latest, parent = _latest_and_parent(APP)
    number = int(latest.split("_", 1)[0])
    conflicting = f"{number:04d}_parallel_branch"
    # What a second branch adds: a migration on the same parent as the app's latest one.
    (project / APP / "migrations" / f"{conflicting}.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [({APP!r}, {parent!r})]\n"
        "    operations = []\n"
    )

    failed = _check(project, "--no-apply")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    conflict_lines = [line for line in failed.stderr.splitlines() if line.startswith("conflict:")]
    assert conflict_lines == [
        f"conflict: app '{APP}' has 2 leaf migrations: {', '.join(sorted([latest, conflicting]))} "
        f"(merge them: python manage.py makemigrations --merge {APP})"
    ]
    assert "Migration check failed: 1 problem(s)" in failed.stderr

    before = set((project / APP / "migrations").glob("*.py"))
    # makemigrations checks the migration history of a database first: this run's test one.
    merged = _run(
        project,
        "manage.py",
        "makemigrations",
        "--merge",
        "--noinput",
        APP,
        database_url=_database_url_named(connection.settings_dict["NAME"]),
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    (merge_file,) = set((project / APP / "migrations").glob("*.py")) - before
    merge_source = merge_file.read_text()
    assert f"({APP!r}, {latest!r})" in merge_source.replace('"', "'")
    assert f"({APP!r}, {conflicting!r})" in merge_source.replace('"', "'")

    # The whole check, the empty database included: the merged graph applies.
    passed = _check(project)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Migration check passed: no conflicts, no missing migrations, every migration applies" in (
        passed.stdout
    )


def test_model_change_without_migration_fails_the_check(project):
    models = project / "jobs" / "models.py"
    source = models.read_text()
    anchor = "class Job(models.Model):\n"
    assert anchor in source
    models.write_text(
        source.replace(anchor, anchor + "    probe_count = models.IntegerField(default=0)\n", 1)
    )

    result = _check(project, "--no-apply")

    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(
        r"^missing migration: app 'jobs' has model changes with no migration "
        r"\(makemigrations would write \d{4}_job_probe_count: Add field probe_count to job\)$",
        result.stderr,
        re.MULTILINE,
    ), result.stderr


def test_migration_failing_on_an_empty_database_fails_the_check_and_leaves_no_database(
    project, django_db_blocker
):
    latest, _parent = _latest_and_parent("jobs")
    broken = f"{int(latest.split('_', 1)[0]) + 1:04d}_broken_on_empty_database"
    (project / "jobs" / "migrations" / f"{broken}.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [('jobs', {latest!r})]\n"
        "    operations = [\n"
        "        migrations.RunSQL(\n"
        "            'ALTER TABLE jobs_not_created ADD COLUMN x integer', migrations.RunSQL.noop\n"
        "        ),\n"
        "    ]\n"
    )

    result = _check(project)

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "apply: an organisation schema (migrate_schemas --tenant, org_migration_check) failed in "
        f'jobs.{broken}: ProgrammingError: relation "jobs_not_created" does not exist'
    ) in result.stderr.splitlines()
    (scratch,) = re.findall(r"empty database (\S+_migcheck_[0-9a-f]{8})", result.stderr)
    with django_db_blocker.unblock(), connection._nodb_cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [scratch])
        assert cursor.fetchone()[0] == 0
