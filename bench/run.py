"""`make bench`: run every benchmark and print its numbers."""

from __future__ import annotations

import subprocess  # nosec B404 - runs this directory's own benchmark modules
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = [
    "bench.org_create",
    "bench.jobs_api",
    "bench.cache_hit",
    "bench.etl_csv",
    "bench.metrics_scrape",
    "bench.audits",
]


def main() -> int:
    failed = 0
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        result = subprocess.run([sys.executable, "-m", module], cwd=ROOT, check=False)  # nosec B603
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
