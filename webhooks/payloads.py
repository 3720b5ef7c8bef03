"""What receivers get: one explicit, versioned payload per webhook event type (Saleor's
webhook payloads are the model). Each event has a builder, a JSON Schema of the body and
an example; `webhooks.events.EVENT_TYPES` is the catalogue that names them.

The rule this module keeps: a payload is its own contract, not an API representation. No
builder calls an API serializer, so a change to the REST API cannot change a webhook body;
a change to a body shows up as a change to its schema, which a snapshot test holds
(webhooks/tests/snapshots/), and raises the event's version.

Builders take the domain object and read its attributes (duck typing; the `Protocol`s
below say which). `jobs`, `billing` and `audits` depend on `webhooks` to publish, so
`webhooks` cannot import their models without making a circle; and a plain dict built by the caller
would put the payload's shape back in the caller, where nothing holds it to the schema.
Reading attributes keeps the shape here and the dependency one way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from django.utils import timezone

# --- Values as they appear in a body ------------------------------------------------------------


def _uuid(value: uuid.UUID | str) -> str:
    return str(value)


def _timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` (the form the bodies have always used), or null."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_UUID = {"type": "string", "format": "uuid"}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}


def body(*, event_type: str, data: dict) -> dict:
    """The whole body sent for an event: its type, when it was published, and its data."""
    return {"type": event_type, "timestamp": timezone.now().isoformat(), "data": data}


def body_schema(*, event_type: str, title: str, data: dict) -> dict:
    """The JSON Schema of a whole body: `{"type", "timestamp", "data"}`, nothing else."""
    return {
        "$schema": _SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "properties": {
            "type": {"const": event_type},
            "timestamp": {**_TIMESTAMP, "description": "When the event was published (ISO 8601)."},
            "data": data,
        },
        "required": ["type", "timestamp", "data"],
        "additionalProperties": False,
    }


def _object(properties: dict) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# --- Jobs: job.completed, job.failed ---------------------------------------------------------


class JobLike(Protocol):
    """What the job builders read (jobs.models.Job has these)."""

    id: uuid.UUID
    job_type: str
    status: str
    cost: int
    attempt_count: int
    max_attempts: int
    output: Any
    error_message: str
    provider: str
    model: str
    cache_hit: bool
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None


def job_data(job: JobLike) -> dict:
    """A job's final state, version 1. The submitted input is left out: it can be large,
    and every subscribed endpoint would receive a copy."""
    return {
        "id": _uuid(job.id),
        "job_type": str(job.job_type),
        "status": str(job.status),
        "cost": int(job.cost),
        "attempt_count": int(job.attempt_count),
        "max_attempts": int(job.max_attempts),
        "output": job.output,
        "error": str(job.error_message),
        "provider": str(job.provider),
        "model": str(job.model),
        "cache_hit": bool(job.cache_hit),
        "created_at": _timestamp(job.created_at),
        "started_at": _timestamp(job.started_at),
        "completed_at": _timestamp(job.completed_at),
        "failed_at": _timestamp(job.failed_at),
    }


def _job_data_schema(status: str) -> dict:
    return _object(
        {
            "id": _UUID,
            "job_type": {"type": "string", "enum": ["summarize", "analyze"]},
            "status": {"const": status},
            "cost": {**_COUNT, "description": "Credits charged (0 for an answer from the cache)."},
            "attempt_count": _COUNT,
            "max_attempts": _COUNT,
            "output": {
                "type": ["object", "null"],
                "description": "The result: `summary` for summarize; `sentiment`, `key_phrases`, "
                "`reading_time_seconds` and `statistics` for analyze.",
            },
            "error": {"type": "string", "description": "Why the job failed; empty when it did not."},
            "provider": {"type": "string"},
            "model": {"type": "string"},
            "cache_hit": {"type": "boolean"},
            "created_at": _TIMESTAMP,
            "started_at": _NULLABLE_TIMESTAMP,
            "completed_at": _NULLABLE_TIMESTAMP,
            "failed_at": _NULLABLE_TIMESTAMP,
        }
    )


JOB_COMPLETED_SCHEMA = body_schema(
    event_type="job.completed", title="job.completed, version 1", data=_job_data_schema("completed")
)
JOB_FAILED_SCHEMA = body_schema(
    event_type="job.failed", title="job.failed, version 1", data=_job_data_schema("failed")
)

JOB_COMPLETED_EXAMPLE = {
    "type": "job.completed",
    "timestamp": "2026-03-02T09:15:04.512337+00:00",
    "data": {
        "id": "5f0c8a52-3a3e-4a8e-9d43-5d2b7f3c9e10",
        "job_type": "summarize",
        "status": "completed",
        "cost": 10,
        "attempt_count": 1,
        "max_attempts": 3,
        "output": {"summary": "Quarterly revenue rose 12%. Churn fell to 2.1%."},
        "error": "",
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "cache_hit": False,
        "created_at": "2026-03-02T09:15:01.204918Z",
        "started_at": "2026-03-02T09:15:01.377120Z",
        "completed_at": "2026-03-02T09:15:04.498201Z",
        "failed_at": None,
    },
}

JOB_FAILED_EXAMPLE = {
    "type": "job.failed",
    "timestamp": "2026-03-02T09:16:12.030114+00:00",
    "data": {
        "id": "b7d1e0c4-6f2a-4c1b-8e5d-2a9f0c3b4d51",
        "job_type": "analyze",
        "status": "failed",
        "cost": 25,
        "attempt_count": 3,
        "max_attempts": 3,
        "output": None,
        "error": "The provider timed out.",
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "cache_hit": False,
        "created_at": "2026-03-02T09:15:51.880412Z",
        "started_at": "2026-03-02T09:16:02.011754Z",
        "completed_at": None,
        "failed_at": "2026-03-02T09:16:12.021870Z",
    },
}


# --- Billing: credits.purchased ----------------------------------------------------------------


class PurchaseLike(Protocol):
    """What the purchase builder reads (billing.models.Purchase has these)."""

    id: uuid.UUID
    pack_id: uuid.UUID
    pack_name: str
    credits: int
    amount_cents: int
    currency: str
    status: str
    checkout_url: str
    credits_reversed: int
    refund_shortfall: int
    created_at: datetime
    completed_at: datetime | None
    expired_at: datetime | None
    refunded_at: datetime | None


def purchase_data(purchase: PurchaseLike) -> dict:
    """A completed credit purchase, version 1."""
    return {
        "id": _uuid(purchase.id),
        "pack_id": _uuid(purchase.pack_id),
        "pack_name": str(purchase.pack_name),
        "credits": int(purchase.credits),
        "amount_cents": int(purchase.amount_cents),
        "currency": str(purchase.currency),
        "status": str(purchase.status),
        "checkout_url": str(purchase.checkout_url),
        "credits_reversed": int(purchase.credits_reversed),
        "refund_shortfall": int(purchase.refund_shortfall),
        "created_at": _timestamp(purchase.created_at),
        "completed_at": _timestamp(purchase.completed_at),
        "expired_at": _timestamp(purchase.expired_at),
        "refunded_at": _timestamp(purchase.refunded_at),
    }


CREDITS_PURCHASED_SCHEMA = body_schema(
    event_type="credits.purchased",
    title="credits.purchased, version 1",
    data=_object(
        {
            "id": _UUID,
            "pack_id": _UUID,
            "pack_name": {"type": "string"},
            "credits": {**_COUNT, "description": "Credits added to the balance."},
            "amount_cents": {**_COUNT, "description": "Price paid, in the currency's minor units."},
            "currency": {"type": "string", "description": "ISO 4217 code, lower case (Stripe's form)."},
            "status": {"const": "completed"},
            "checkout_url": {"type": "string"},
            "credits_reversed": _COUNT,
            "refund_shortfall": _COUNT,
            "created_at": _TIMESTAMP,
            "completed_at": _TIMESTAMP,
            "expired_at": _NULLABLE_TIMESTAMP,
            "refunded_at": _NULLABLE_TIMESTAMP,
        }
    ),
)

CREDITS_PURCHASED_EXAMPLE = {
    "type": "credits.purchased",
    "timestamp": "2026-03-02T10:02:45.118302+00:00",
    "data": {
        "id": "0e6b3f1d-8c2a-4d5e-9f70-6a1b2c3d4e5f",
        "pack_id": "c4a2e9b8-1d3f-4e6a-8b7c-9d0e1f2a3b4c",
        "pack_name": "Starter",
        "credits": 100,
        "amount_cents": 1000,
        "currency": "usd",
        "status": "completed",
        "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
        "credits_reversed": 0,
        "refund_shortfall": 0,
        "created_at": "2026-03-02T10:01:12.402117Z",
        "completed_at": "2026-03-02T10:02:45.101994Z",
        "expired_at": None,
        "refunded_at": None,
    },
}


# --- Audits: audit.completed, audit.failed -------------------------------------------------------


class AuditLike(Protocol):
    """What the audit builder reads (audits.models.Audit has these)."""

    id: uuid.UUID
    status: str
    input_kind: str
    total: int
    done: int
    flagged: int
    failed: int
    cancelled_items: int
    credits_reserved: int
    credits_charged: int
    credits_released: int
    error: str
    finished_at: datetime | None


def audit_data(audit: AuditLike) -> dict:
    """An audit's end, version 1: its counts and credits when it ended. Neither the criteria
    nor the items are sent (the items and their verdicts are read with the API, or as the
    results CSV)."""
    return {
        "id": _uuid(audit.id),
        "status": str(audit.status),
        "input_kind": str(audit.input_kind),
        "total": int(audit.total),
        "done": int(audit.done),
        "flagged": int(audit.flagged),
        "failed": int(audit.failed),
        "cancelled_items": int(audit.cancelled_items),
        "credits_reserved": int(audit.credits_reserved),
        "credits_charged": int(audit.credits_charged),
        "credits_released": int(audit.credits_released),
        "error": str(audit.error),
        "finished_at": _timestamp(audit.finished_at),
    }


def _audit_data_schema(status: str) -> dict:
    return _object(
        {
            "id": _UUID,
            "status": {"const": status},
            "input_kind": {
                "type": "string",
                "enum": ["x_archive", "csv", "records"],
                "description": "What was uploaded: an X archive, a CSV, or the organisation's records.",
            },
            "total": {**_COUNT, "description": "Items in the audit."},
            "done": {**_COUNT, "description": "Items settled: evaluated (with a verdict) or failed."},
            "flagged": {**_COUNT, "description": "Evaluated items the verdict flagged."},
            "failed": {**_COUNT, "description": "Items the provider could not evaluate (not charged)."},
            "cancelled_items": {
                **_COUNT,
                "description": "Items never evaluated because the audit failed (not charged).",
            },
            "credits_reserved": {**_COUNT, "description": "Credits set aside when the audit was created."},
            "credits_charged": {**_COUNT, "description": "Credits charged for the evaluated items."},
            "credits_released": {
                **_COUNT,
                "description": "Credits returned to the balance: reserved for items not evaluated. "
                "A batch still in flight when an audit failed may settle after the event; "
                "GET /api/v1/audits/{id} has the final numbers.",
            },
            "error": {"type": "string", "description": "Why the audit failed; empty when it did not."},
            "finished_at": _TIMESTAMP,
        }
    )


AUDIT_COMPLETED_SCHEMA = body_schema(
    event_type="audit.completed", title="audit.completed, version 1", data=_audit_data_schema("completed")
)
AUDIT_FAILED_SCHEMA = body_schema(
    event_type="audit.failed", title="audit.failed, version 1", data=_audit_data_schema("failed")
)

AUDIT_COMPLETED_EXAMPLE = {
    "type": "audit.completed",
    "timestamp": "2026-03-02T12:41:07.220415+00:00",
    "data": {
        "id": "3c9e7a10-5b2d-4f8e-a1c6-7d4b9e2f0a83",
        "status": "completed",
        "input_kind": "x_archive",
        "total": 4812,
        "done": 4812,
        "flagged": 137,
        "failed": 3,
        "cancelled_items": 0,
        "credits_reserved": 4812,
        "credits_charged": 4809,
        "credits_released": 3,
        "error": "",
        "finished_at": "2026-03-02T12:41:07.204377Z",
    },
}

AUDIT_FAILED_EXAMPLE = {
    "type": "audit.failed",
    "timestamp": "2026-03-02T13:05:52.611830+00:00",
    "data": {
        "id": "e2a4c6f8-0b1d-4e3f-9a5c-7b9d1f3e5a70",
        "status": "failed",
        "input_kind": "csv",
        "total": 1200,
        "done": 100,
        "flagged": 0,
        "failed": 100,
        "cancelled_items": 1100,
        "credits_reserved": 1200,
        "credits_charged": 0,
        "credits_released": 1200,
        "error": (
            "The provider failed every item of the last batches; the remaining items were not evaluated."
        ),
        "finished_at": "2026-03-02T13:05:52.598112Z",
    },
}


# --- webhook.test --------------------------------------------------------------------------------


class EndpointLike(Protocol):
    """What the test-event builder reads (webhooks.models.WebhookEndpoint has it)."""

    pk: Any


TEST_MESSAGE = "This is a test event from NexusAPI."


def webhook_test_data(endpoint: EndpointLike) -> dict:
    """The body of a test sent on request, version 1: which endpoint it was sent to."""
    return {"endpoint_id": _uuid(endpoint.pk), "message": TEST_MESSAGE}


WEBHOOK_TEST_SCHEMA = body_schema(
    event_type="webhook.test",
    title="webhook.test, version 1",
    data=_object({"endpoint_id": _UUID, "message": {"type": "string"}}),
)

WEBHOOK_TEST_EXAMPLE = {
    "type": "webhook.test",
    "timestamp": "2026-03-02T11:30:00.000412+00:00",
    "data": {"endpoint_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "message": TEST_MESSAGE},
}

Builder = Callable[[Any], dict]
