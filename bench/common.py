"""Benchmark plumbing: a throwaway database on the configured server, Django set up against
it, and percentile helpers. Benchmarks report numbers; they never assert on them."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
_BASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/nexus")
# <database>_bench beside the configured database: checkouts with different databases
# can benchmark side by side. BENCH_DATABASE_NAME overrides it.
BENCH_DB = os.environ.get("BENCH_DATABASE_NAME") or f"{urlsplit(_BASE_URL).path.lstrip('/') or 'nexus'}_bench"


def bench_database_url() -> str:
    return urlunsplit(urlsplit(_BASE_URL)._replace(path=f"/{BENCH_DB}"))


def setup_django(*, fresh: bool = True) -> None:
    """Point Django at a clean benchmark database, migrated."""
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = bench_database_url()
    # The benchmark's own Redis database, shared with the server and worker it starts.
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    os.environ.setdefault("NEXUS_TESTING", "true")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus.settings")
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    admin = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "dbname": "postgres",
    }
    with psycopg.connect(**{k: v for k, v in admin.items() if v}, autocommit=True) as conn:
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    call_command("sync_template_schema", verbosity=0)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(pick(0.95), 2),
        "p99": round(pick(0.99), 2),
        "max": round(ordered[-1], 2),
    }


def report(title: str, values: dict) -> None:
    print(f"{title}: " + ", ".join(f"{k}={v}" for k, v in values.items()), flush=True)
