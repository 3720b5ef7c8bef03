"""The ledger's Prometheus series (docs/specs/observability.md)."""

from __future__ import annotations

from prometheus_client import Counter

# Credits moved, by ledger kind (spent = deduction, bought = purchase), counted when the
# ledger row commits: a rolled-back charge is not counted. Never by organisation.
CREDITS = Counter("nexus_credits_total", "Credits moved through the ledger", ["kind"])
