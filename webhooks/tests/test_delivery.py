"""Signed deliveries from the outbox: signatures, retries, disabling, redelivery, SSRF at
delivery time, and surviving a broker outage. Attempts run in-process here; the worker
test runs them through Celery."""

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context
from standardwebhooks.webhooks import Webhook

from jobs import services as job_services
from jobs import tasks as job_tasks
from webhooks import services, tasks
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tests.factories import endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(broker):
    """Deliveries handed to the broker (recorded at the broker edge, not sent)."""
    return broker.watch("webhooks.deliver", lambda message: (message.args[0], message.countdown))


@pytest.fixture
def org(funded):
    """Runs the test in organisation A's schema; its 100 credits come from `funded`."""
    world = funded
    with tenant_context(world.org_a):
        yield world


def _verify_by_hand(request, secret: str) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" in request.headers["webhook-signature"].split(" ")


def test_completed_job_is_delivered_signed(org, receiver, sent, django_capture_on_commit_callbacks):
    _endpoint_row, secret = endpoint_create(url=receiver.hook_url)
    job = job_services.job_create(user=org.member_a, job_type="summarize", text="Deliver me. Twice? No.")
    with django_capture_on_commit_callbacks(execute=True):
        job_tasks.run_job(str(job.pk))
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "job.completed"
    assert sent == [(delivery.pk, 0)]

    attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert attempt.succeeded
    assert attempt.status_code == 200
    assert attempt.response_excerpt == "ok"
    (request,) = receiver.requests
    payload = Webhook(secret).verify(request.body, request.headers)
    _verify_by_hand(request, secret)
    assert request.headers["webhook-id"] == delivery.pk
    assert delivery.pk.startswith("msg_")
    assert request.headers["content-type"] == "application/json"
    assert payload["type"] == "job.completed"
    assert payload["timestamp"]
    assert payload["data"]["id"] == str(job.pk)
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["output"]["summary"]
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert delivery.completed_at


def test_failed_job_is_delivered_as_job_failed(org, receiver, sent, django_capture_on_commit_callbacks):
    endpoint_create(url=receiver.hook_url)
    job = job_services.job_create(user=org.member_a, job_type="summarize", text="x", provider="always-fails")
    for _ in range(3):
        job_tasks.run_job(str(job.pk))
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "job.failed"
    assert delivery.payload["data"]["status"] == "failed"
    assert delivery.payload["data"]["error"]


def test_only_subscribed_active_endpoints_get_the_event(org, receiver, sent):
    endpoint_create(url=receiver.hook_url, events=("job.failed",))
    inactive, _ = endpoint_create(url=receiver.hook_url)
    services.webhook_endpoint_update(endpoint=inactive, active=False)
    assert services.webhook_publish(event_type="job.completed", data={"id": "x"}) == []


def test_unregistered_event_type_is_a_programming_error(org):
    with pytest.raises(ValueError):
        services.webhook_publish(event_type="job.exploded", data={})


def test_failing_receiver_is_retried_on_the_schedule_then_fails(org, receiver, sent, settings):
    receiver.answer(500, body="x" * 5000)
    endpoint, _ = endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={"id": "j1"})
    from django.db import connection

    for expected_delay in settings.WEBHOOK_RETRY_DELAYS:
        del connection.run_on_commit[:]  # what the previous step queued; recorded below instead
        sent.clear()
        before = timezone.now()
        attempt = services.webhook_attempt(delivery_id=delivery.pk)
        assert not attempt.succeeded
        assert attempt.status_code == 500
        assert attempt.error == "HTTP 500"
        assert len(attempt.response_excerpt) == 1024
        delivery.refresh_from_db()
        assert delivery.status == "pending"
        waited = (delivery.next_attempt_at - before).total_seconds()
        assert expected_delay <= waited < expected_delay + 1
        connection.run_on_commit[-1][1]()  # the send scheduled by this attempt
        assert sent == [(delivery.pk, expected_delay)]
    last = services.webhook_attempt(delivery_id=delivery.pk)
    assert last.number == 4
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.attempts.count() == 4
    assert services.webhook_attempt(delivery_id=delivery.pk) is None
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1
    assert endpoint.active
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.pk] * 4


def test_production_retry_schedule_and_timeout():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "nexus.settings", "NEXUS_TESTING": "true"}
    code = (
        "from nexus import settings as s; print(s.WEBHOOK_RETRY_DELAYS, s.WEBHOOK_TIMEOUT_SECONDS, "
        "s.WEBHOOK_DISABLE_AFTER_FAILURES, s.WEBHOOK_ALLOW_PRIVATE_NETWORKS)"
    )
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[5.0, 25.0, 125.0] 10.0 20 False"


def test_410_gone_disables_the_endpoint(org, receiver, sent):
    receiver.answer(410)
    endpoint, _ = endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    services.webhook_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.attempt_count == 1
    assert not endpoint.active
    assert "410 Gone" in endpoint.disabled_reason
    assert endpoint.disabled_at


def test_consecutive_failed_deliveries_disable_the_endpoint(org, receiver, sent, settings, api_as):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 2
    receiver.answer(503)
    endpoint, _ = endpoint_create(url=receiver.hook_url)
    for _ in range(2):
        (delivery,) = services.webhook_publish(event_type="job.completed", data={})
        for _attempt in range(4):
            services.webhook_attempt(delivery_id=delivery.pk)
    endpoint.refresh_from_db()
    assert not endpoint.active
    assert "last 2 deliveries all failed" in endpoint.disabled_reason
    shown = api_as(org.admin_a).get(f"/api/v1/webhooks/{endpoint.pk}").json()["data"]
    assert "HTTP 503" in shown["disabled_reason"]


def test_a_success_resets_the_failure_count(org, receiver, sent):
    receiver.answer(500, 500, 500, 500, 200)
    endpoint, _ = endpoint_create(url=receiver.hook_url)
    for _ in range(2):
        (delivery,) = services.webhook_publish(event_type="job.completed", data={})
        for _attempt in range(4):
            services.webhook_attempt(delivery_id=delivery.pk)
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0


def test_timeouts_and_redirects_are_failures(org, receiver, sent, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.answer(200, delay=1.0)
    endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert not attempt.succeeded
    assert attempt.status_code is None
    assert "Timed out" in attempt.error

    receiver.answer(302, headers={"Location": "http://169.254.169.254/"})
    attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert attempt.status_code == 302
    assert "redirects are not followed" in attempt.error


def test_unreachable_receiver_is_a_failed_attempt(org, sent):
    services.webhook_endpoint_create(url="http://127.0.0.1:1/hook", event_types=["job.completed"])
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert not attempt.succeeded
    assert "Could not connect" in attempt.error


def test_ssrf_is_checked_again_at_delivery(org, receiver, sent, settings):
    endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False  # as if the name now resolved to a private address
    attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert not attempt.succeeded
    assert attempt.error.startswith("Refused:")
    assert receiver.requests == []


def test_rotation_signs_with_both_secrets_for_the_overlap(org, receiver, sent):
    endpoint, old_secret = endpoint_create(url=receiver.hook_url)
    new_secret = services.webhook_secret_rotate(endpoint=endpoint)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    services.webhook_attempt(delivery_id=delivery.pk)
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (new_secret, old_secret):
        Webhook(secret).verify(request.body, request.headers)
        _verify_by_hand(request, secret)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_secret_expires_at=timezone.now())
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    services.webhook_attempt(delivery_id=delivery.pk)
    assert len(receiver.requests[-1].headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(receiver.requests[-1].body, receiver.requests[-1].headers)


def test_redeliver_sends_the_same_message_again(org, receiver, sent, api_as):
    receiver.answer(500, 500, 500, 500, 200)
    endpoint_create(url=receiver.hook_url)
    (delivery,) = services.webhook_publish(event_type="job.completed", data={"n": 1})
    for _ in range(4):
        services.webhook_attempt(delivery_id=delivery.pk)
    client = api_as(org.admin_a)
    response = client.post(f"/api/v1/webhooks/deliveries/{delivery.pk}/redeliver")
    assert response.status_code == 202
    assert response.json()["data"]["status"] == "pending"
    assert client.post(f"/api/v1/webhooks/deliveries/{delivery.pk}/redeliver").status_code == 409
    attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert attempt.succeeded
    assert attempt.number == 5
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.pk}
    assert (
        api_as(org.member_a).post(f"/api/v1/webhooks/deliveries/{delivery.pk}/redeliver").status_code == 403
    )
    # A retried redeliver with its Idempotency-Key is answered again, not refused as busy.
    path = f"/api/v1/webhooks/deliveries/{delivery.pk}/redeliver"
    first = client.post(path, HTTP_IDEMPOTENCY_KEY="again-1")
    again = client.post(path, HTTP_IDEMPOTENCY_KEY="again-1")
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"


def test_test_event_and_delivery_log(org, receiver, sent, api_as):
    endpoint, secret = endpoint_create(url=receiver.hook_url)
    client = api_as(org.admin_a)
    response = client.post(f"/api/v1/webhooks/{endpoint.pk}/test")
    assert response.status_code == 202
    delivery_id = response.json()["data"]["id"]
    services.webhook_attempt(delivery_id=delivery_id)
    payload = Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["endpoint_id"] == str(endpoint.pk)
    log = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries").json()
    assert log["meta"]["total"] == 1
    (entry,) = log["data"]
    assert entry["status"] == "succeeded"
    assert entry["attempts"][0]["status_code"] == 200
    assert entry["attempts"][0]["duration_ms"] >= 0
    assert entry["attempts"][0]["started_at"]
    member = api_as(org.member_a)
    assert member.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?status=failed").json()["meta"]["total"] == 0
    assert (
        member.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?event_type=webhook.test").json()["meta"][
            "total"
        ]
        == 1
    )
    assert member.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?status=lost").status_code == 422


def test_outbox_survives_a_broker_outage(org, receiver, broker, django_capture_on_commit_callbacks):
    broker.down = True
    endpoint_create(url=receiver.hook_url)
    with django_capture_on_commit_callbacks(execute=True):
        (delivery,) = services.webhook_publish(event_type="job.completed", data={"n": 1})
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.attempt_count == 0

    broker.down = False
    recovered = broker.watch("webhooks.deliver")
    assert services.webhooks_sweep() == 0  # not overdue yet
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.webhooks_sweep() == 1
    assert recovered == [delivery.pk]
    tasks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert json.loads(receiver.requests[0].body)["data"] == {"n": 1}
