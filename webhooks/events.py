"""The catalogue of webhook events: every event type an endpoint can receive, each with its
description, payload version, JSON Schema, example and builder (webhooks/payloads.py).

The rule it keeps: nothing is published that is not in this catalogue, and every body is
built by the catalogue's builder for its event (`webhook_publish` looks it up here). Adding
an event is an entry in `payloads.py`, one in EVENT_TYPES, its schema snapshot, and a
`webhook_publish(event_type=..., subject=...)` where the thing happens.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhooks import payloads


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    version: int
    schema: dict
    example: dict
    build: payloads.Builder
    # False for an event sent only on request, whatever an endpoint subscribes to.
    subscribable: bool = True


EVENT_TYPES: dict[str, EventType] = {
    event.name: event
    for event in (
        EventType(
            name="job.completed",
            description="A job finished successfully; data is the job.",
            version=1,
            schema=payloads.JOB_COMPLETED_SCHEMA,
            example=payloads.JOB_COMPLETED_EXAMPLE,
            build=payloads.job_data,
        ),
        EventType(
            name="job.failed",
            description="A job failed for good and was refunded; data is the job.",
            version=1,
            schema=payloads.JOB_FAILED_SCHEMA,
            example=payloads.JOB_FAILED_EXAMPLE,
            build=payloads.job_data,
        ),
        EventType(
            name="credits.purchased",
            description="A credit pack was paid for and its credits added; data is the purchase.",
            version=1,
            schema=payloads.CREDITS_PURCHASED_SCHEMA,
            example=payloads.CREDITS_PURCHASED_EXAMPLE,
            build=payloads.purchase_data,
        ),
        EventType(
            name="audit.completed",
            description="An audit evaluated all its items and released the credits of those that "
            "failed; data is its counts and credits.",
            version=1,
            schema=payloads.AUDIT_COMPLETED_SCHEMA,
            example=payloads.AUDIT_COMPLETED_EXAMPLE,
            build=payloads.audit_data,
        ),
        EventType(
            name="audit.failed",
            description="An audit stopped because the provider failed every item of its last "
            "batches; the items left were cancelled and their credits released. Data is its "
            "counts and credits.",
            version=1,
            schema=payloads.AUDIT_FAILED_SCHEMA,
            example=payloads.AUDIT_FAILED_EXAMPLE,
            build=payloads.audit_data,
        ),
        EventType(
            name="webhook.test",
            description="A test sent on request to one endpoint (POST /webhooks/{id}/test); "
            "data names the endpoint.",
            version=1,
            schema=payloads.WEBHOOK_TEST_SCHEMA,
            example=payloads.WEBHOOK_TEST_EXAMPLE,
            build=payloads.webhook_test_data,
            subscribable=False,
        ),
    )
}

SUBSCRIBABLE_EVENTS: dict[str, str] = {
    name: event.description for name, event in EVENT_TYPES.items() if event.subscribable
}

# Sent only on request (POST /webhooks/{id}/test), whatever the endpoint subscribes to.
TEST_EVENT = "webhook.test"

ALL_EVENTS = set(EVENT_TYPES)


def event_type_get(name: str) -> EventType:
    """The catalogue's entry for `name`; ValueError for an unregistered event (a programming
    error: callers name events in code, never from input)."""
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise ValueError(f"Unregistered webhook event type {name!r}") from None
