"""Webhooks through a real Celery worker: a job completes, its delivery fails twice and is
retried on the (shortened) schedule, then succeeds; a receiver down for three deliveries
makes its endpoint failing (one notice) until a delivery succeeds."""

import itertools
import time

from django.conf import settings
from django_tenants.utils import tenant_context
from standardwebhooks.webhooks import Webhook

from jobs import services as job_services
from webhooks import selectors, services
from webhooks.models import WebhookDelivery, WebhookNotice
from webhooks.tests.receiver import Receiver


def test_failing_receiver_gets_retries_on_the_schedule(live_org, celery_worker):
    live_org.grant(100)
    with Receiver() as receiver:
        receiver.answer(500, 502, 200)
        with tenant_context(live_org):
            _, secret = services.webhook_endpoint_create(url=receiver.hook_url, event_types=["job.completed"])
            job = job_services.job_create(
                user=live_org.admin, job_type="summarize", text="Tell everyone. Now."
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with tenant_context(live_org):
                delivery = WebhookDelivery.objects.filter(status="succeeded").first()
            if delivery:
                break
            time.sleep(0.1)
        assert delivery is not None, "the delivery never succeeded"
        with tenant_context(live_org):
            attempts = list(delivery.attempts.order_by("number"))
        assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [
            (1, 500, False),
            (2, 502, False),
            (3, 200, True),
        ]
        gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(attempts)]
        delays = settings.WEBHOOK_RETRY_DELAYS
        assert gaps[0] >= delays[0] and gaps[1] >= delays[1], gaps
        ids = {r.headers["webhook-id"] for r in receiver.requests}
        assert ids == {delivery.pk}
        payload = Webhook(secret).verify(receiver.requests[-1].body, receiver.requests[-1].headers)
        assert payload["data"]["id"] == str(job.pk)


def _wait_for(predicate, *, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_receiver_down_then_up_through_the_worker_turns_health_failing_then_healthy(live_org, celery_worker):
    with Receiver() as receiver:
        receiver.answer(503)
        with tenant_context(live_org):
            endpoint, _ = services.webhook_endpoint_create(
                url=receiver.hook_url, event_types=["job.completed"]
            )
        for _ in range(3):
            with tenant_context(live_org):
                services.webhook_send_test(endpoint=endpoint)

        def failed_three():
            with tenant_context(live_org):
                return WebhookDelivery.objects.filter(status="failed").count() == 3

        _wait_for(failed_three)
        with tenant_context(live_org):
            endpoint.refresh_from_db()
            health = selectors.endpoint_health(endpoint)
            assert health["status"] == "failing"
            assert health["consecutive_failures"] == 3
            assert health["last_error"] == "HTTP 503"
            assert health["failing_since"] is not None
            (notice,) = WebhookNotice.objects.all()
            assert notice.kind == "failing"
            assert notice.resolved_at is None
        assert len(receiver.requests) == 3 * (len(settings.WEBHOOK_RETRY_DELAYS) + 1)

        receiver.answer(200)
        with tenant_context(live_org):
            services.webhook_send_test(endpoint=endpoint)

        def succeeded():
            with tenant_context(live_org):
                return WebhookDelivery.objects.filter(status="succeeded").exists()

        _wait_for(succeeded)
        with tenant_context(live_org):
            endpoint.refresh_from_db()
            health = selectors.endpoint_health(endpoint)
            assert health["status"] == "healthy"
            assert health["consecutive_failures"] == 0
            assert health["failing_since"] is None
            assert health["last_success_at"] is not None
            (notice,) = WebhookNotice.objects.all()
            assert notice.resolved_at is not None
