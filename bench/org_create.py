"""Time to create an organisation (row + schema), cloned from the template versus by
running every tenant migration."""

from __future__ import annotations

import time

from bench.common import percentiles, report, setup_django


def main(count: int = 20) -> None:
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    from tenants.services import organisation_create

    cloned = []
    for i in range(count):
        started = time.perf_counter()
        organisation_create(name=f"Bench Clone {i}")
        cloned.append((time.perf_counter() - started) * 1000)
    report("organisation create (template clone), ms", percentiles(cloned))

    migrated = []
    for i in range(min(count, 5)):
        schema = f"bench_migrate_{i}"
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{schema}"')
        call_command("migrate_schemas", tenant=True, schema_name=schema, interactive=False, verbosity=0)
        migrated.append((time.perf_counter() - started) * 1000)
        connection.set_schema_to_public()
    report("schema by running migrations (for comparison), ms", percentiles(migrated))


if __name__ == "__main__":
    main()
