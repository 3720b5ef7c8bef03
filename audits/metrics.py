"""The audits' Prometheus series (docs/specs/observability.md). Labels come from fixed sets
(outcomes; the configured provider and models), never from an organisation or an audit.
What a transaction writes is counted when it commits; what happened at the provider (a 429,
time spent waiting for the quota) is counted when it happens, since a rollback does not
undo it."""

from __future__ import annotations

from django.conf import settings
from prometheus_client import Counter, Histogram

from audits import quota
from audits.evaluation import default_provider_name

ITEMS = Counter(
    "nexus_audit_items_total",
    "Audit items settled (evaluated: a verdict, charged; failed; cancelled: never evaluated)",
    ["outcome"],
)
BATCHES = Counter(
    "nexus_audit_batches_total",
    "Audit batch runs by outcome (committed; split: committed after splitting; requeued: waited)",
    ["outcome"],
)
PROVIDER_THROTTLED = Counter(
    "nexus_audit_provider_throttled_total", "Provider calls of audits answered 429 (throttled)"
)
QUOTA_WAIT = Histogram(
    "nexus_audit_quota_wait_seconds",
    "Time a provider call of an audit waited in the call guard for a slot and the quota",
    # From nothing (room at once) to AUDIT_QUOTA_MAX_WAIT_SECONDS (10 s) and a little past it.
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10, 15, 30),
)

ITEM_OUTCOMES = ("evaluated", "failed", "cancelled")
BATCH_OUTCOMES = ("committed", "split", "requeued")

for _outcome in ITEM_OUTCOMES:
    ITEMS.labels(outcome=_outcome)  # at 0 from the start, for rate()
for _outcome in BATCH_OUTCOMES:
    BATCHES.labels(outcome=_outcome)


def concurrency_limits() -> dict[tuple[str, str], int]:
    """The shared limit of provider calls in flight (audits.quota.AdaptiveConcurrency) of each
    configured model of the provider audits use now, keyed by (provider, model), read from
    Redis: `nexus_audit_concurrency_limit`, read when /metrics is scraped. A quota whose state
    Redis did not give is left out. Built with the bounds audits.services gives its call
    guard, so the limit read is the one the guard applies."""
    provider = default_provider_name()
    limits = {}
    for model in dict.fromkeys(settings.AUDIT_MODELS):
        state = quota.AdaptiveConcurrency(
            quota.quota_name(provider=provider, model=model),
            initial=settings.AUDIT_CONCURRENCY_INITIAL,
            maximum=settings.AUDIT_CONCURRENCY_MAX,
            recover_after=settings.AUDIT_CONCURRENCY_RECOVER,
        ).state()
        if state is not None:
            limits[(provider, model)] = state.limit
    return limits
