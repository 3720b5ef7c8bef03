"""What deliveries tell an operator: attempts by outcome, latency, and disabled endpoints
counted and logged."""

from __future__ import annotations

import logging

import pytest
from django_tenants.utils import tenant_context

from nexus.tests.metric_values import Moved
from webhooks import services
from webhooks.tests.factories import endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def org(funded, broker):
    with tenant_context(funded.org_a):
        yield funded


def _events(caplog, name: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def test_a_delivered_attempt_is_counted_with_its_latency(org, receiver):
    endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    with Moved() as moved:
        services.webhook_attempt(delivery_id=delivery.pk)
    assert moved("nexus_webhook_deliveries_total", outcome="succeeded") == 1
    assert moved("nexus_webhook_delivery_latency_seconds_count") == 1
    assert moved("nexus_webhook_attempt_duration_seconds_count") == 1


def test_a_failed_attempt_is_counted_as_retrying_and_logged(org, receiver, caplog):
    caplog.set_level(logging.INFO, logger="webhooks.services")
    receiver.answer(503)
    endpoint, _ = endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    with Moved() as moved:
        services.webhook_attempt(delivery_id=delivery.pk)
    assert moved("nexus_webhook_deliveries_total", outcome="retrying") == 1
    (line,) = _events(caplog, "webhook.attempt_failed")
    assert line["delivery_id"] == str(delivery.pk)
    assert line["endpoint_id"] == str(endpoint.pk)
    assert line["error_class"] == "http_503"
    assert line["next_delay_s"] > 0
    assert line["level"] == "warning"


def test_an_endpoint_disabled_by_410_is_counted_and_logged(
    org, receiver, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO, logger="webhooks.services")
    receiver.answer(410)
    endpoint, _ = endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    with Moved() as moved, django_capture_on_commit_callbacks(execute=True):
        services.webhook_attempt(delivery_id=delivery.pk)
    assert moved("nexus_webhook_deliveries_total", outcome="failed") == 1
    assert moved("nexus_webhook_endpoints_disabled_total", reason="gone") == 1
    (line,) = _events(caplog, "webhook.endpoint_disabled")
    assert line["endpoint_id"] == str(endpoint.pk)
    assert line["cause"] == "gone"
