"""The ETL's Prometheus series (docs/specs/observability.md). Labelled by source kind and
outcome, never by organisation or source."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ETL_RUNS = Counter("nexus_etl_runs_total", "ETL runs that ended", ["source_kind", "outcome"])
ETL_ROWS = Counter("nexus_etl_rows_ingested_total", "Unified records inserted or updated", ["source_kind"])
ETL_RUN_DURATION = Histogram(
    "nexus_etl_run_duration_seconds",
    "From a run's start to its end, all slices",
    ["source_kind"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
ETL_DRIFT = Counter("nexus_etl_drift_events_total", "Schema drift found in incoming items", ["drift_kind"])
ETL_QUARANTINED = Counter("nexus_etl_quarantined_items_total", "Items set aside as invalid", ["source_kind"])


def _from_zero() -> None:
    """Each source kind's run outcomes at 0 from the start, for rate()."""
    from etl.models import SourceKind

    for kind in SourceKind.values:
        for outcome in ("succeeded", "failed"):
            ETL_RUNS.labels(source_kind=kind, outcome=outcome)


_from_zero()
