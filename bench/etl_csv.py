"""ETL throughput: a generated 100,000-row CSV ingested end to end (raw rows, unified
upserts, checkpoints), then an incremental re-run with nothing new."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from bench.common import ROOT, report, setup_django

ROWS = int(os.environ.get("BENCH_ETL_ROWS", "100000"))


def _generate(path: Path) -> None:
    rng = random.Random(42)
    formats = ["2026-01-{d:02d}", "{d:02d}/01/2026", "Jan {d}, 2026 10:00", "2026-01-{d:02d}T08:00:00+02:00"]
    with path.open("w") as handle:
        handle.write(" Article ID ,Headline,Body Text,Published On,Author Name,Tags,Page Views\n")
        for i in range(ROWS):
            day = rng.randint(1, 28)
            published = rng.choice(formats).format(d=day)
            views = f"{rng.randint(1, 99999):,}"
            handle.write(f"B-{i:07d},Headline {i},Body text for row {i} with some words.,{published},")
            handle.write(f'Author {i % 97},"tag{i % 13}, tag{i % 7}","{views}"\n')


def main() -> None:
    setup_django()
    from django.conf import settings
    from django_tenants.utils import tenant_context

    from etl.models import Record
    from etl.samples import ARTICLES_CSV_MAPPING
    from etl.services import etl_run_source, etl_source_create
    from tenants.services import organisation_create

    org = organisation_create(name="ETL Bench")
    # A server-side file, in the organisation's own directory under the root.
    files = ROOT / ".data" / "etl-files"
    (files / org.schema_name).mkdir(parents=True, exist_ok=True)
    settings.ETL_LOCAL_ROOTS = [str(files)]
    path = files / org.schema_name / "bench-100k.csv"
    started = time.perf_counter()
    _generate(path)
    report("generated CSV", {"rows": ROWS, "seconds": round(time.perf_counter() - started, 2)})

    with tenant_context(org):
        source = etl_source_create(
            name="Bench", kind="csv", config={"path": path.name}, field_mapping=ARTICLES_CSV_MAPPING
        )
        started = time.perf_counter()
        run = etl_run_source(source=source)
        elapsed = time.perf_counter() - started
        assert run.status == "succeeded", run.error
        report(
            "first run (raw + unified + checkpoint)",
            {
                "rows": run.fetched,
                "inserted": run.inserted,
                "quarantined": run.quarantined,
                "seconds": round(elapsed, 2),
                "rows_per_s": round(run.fetched / elapsed),
            },
        )
        started = time.perf_counter()
        again = etl_run_source(source=source)
        report(
            "incremental re-run, nothing new",
            {
                "fetched": again.fetched,
                "inserted": again.inserted,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        report("records stored", {"count": Record.objects.count()})
    path.unlink()


if __name__ == "__main__":
    main()
