"""The webhooks' Prometheus series (docs/specs/observability.md). No label names an
organisation or an endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERY_ATTEMPTS = Counter(
    "nexus_webhook_deliveries_total",
    "Delivery attempts by outcome (succeeded, retrying: another attempt follows, failed: the last)",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "nexus_webhook_delivery_latency_seconds",
    "From the event to the receiver's 2xx, retries included",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600, 1800, 3600),
)
ATTEMPT_DURATION = Histogram(
    "nexus_webhook_attempt_duration_seconds",
    "One HTTP attempt, connection included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ENDPOINTS_DISABLED = Counter(
    "nexus_webhook_endpoints_disabled_total", "Endpoints disabled by the product", ["reason"]
)

for _outcome in ("succeeded", "retrying", "failed"):
    DELIVERY_ATTEMPTS.labels(outcome=_outcome)  # at 0 from the start, for rate()
for _reason in ("gone", "failures"):
    ENDPOINTS_DISABLED.labels(reason=_reason)
