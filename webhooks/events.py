"""The events an organisation can subscribe to. Adding one is a line here plus a
`webhook_publish(event_type=..., data=...)` where the thing happens."""

SUBSCRIBABLE_EVENTS: dict[str, str] = {
    "job.completed": "A job finished successfully; data is the job.",
    "job.failed": "A job failed for good and was refunded; data is the job.",
    "credits.purchased": "A credit pack was paid for and its credits added; data is the purchase.",
}

# Sent only on request (POST /webhooks/{id}/test), whatever the endpoint subscribes to.
TEST_EVENT = "webhook.test"

ALL_EVENTS = {*SUBSCRIBABLE_EVENTS, TEST_EVENT}
