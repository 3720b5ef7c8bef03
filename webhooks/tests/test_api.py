"""Webhook endpoint management: who may do what, validation, SSRF refusals."""

import base64
import socket

import pytest
from django_tenants.utils import tenant_context

from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def _register(client, url, events=("job.completed",), **extra):
    return client.post("/api/v1/webhooks", {"url": url, "event_types": list(events), **extra}, format="json")


def test_admin_registers_and_sees_the_secret_once(world, api_as, receiver):
    client = api_as(world.admin_a)
    response = _register(client, receiver.hook_url, description="CRM sync")
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["secret"].startswith("whsec_")
    assert 24 <= len(base64.b64decode(data["secret"][6:])) <= 64
    assert data["event_types"] == ["job.completed"]
    assert data["active"] is True
    listed = client.get("/api/v1/webhooks").json()["data"]
    assert [e["id"] for e in listed] == [data["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in client.get(f"/api/v1/webhooks/{data['id']}").json()["data"]
    with tenant_context(world.org_a):
        stored = WebhookEndpoint.objects.get()
        assert data["secret"] not in stored.secret_encrypted  # encrypted at rest


def test_member_can_list_but_not_change(world, api_as, receiver):
    endpoint_id = _register(api_as(world.admin_a), receiver.hook_url).json()["data"]["id"]
    member = api_as(world.member_a)
    assert member.get("/api/v1/webhooks").status_code == 200
    assert _register(member, receiver.hook_url).status_code == 403
    for method, path in [
        ("patch", f"/api/v1/webhooks/{endpoint_id}"),
        ("delete", f"/api/v1/webhooks/{endpoint_id}"),
        ("post", f"/api/v1/webhooks/{endpoint_id}/rotate-secret"),
        ("post", f"/api/v1/webhooks/{endpoint_id}/test"),
    ]:
        assert getattr(member, method)(path, {"active": False}, format="json").status_code == 403


def test_another_organisations_endpoint_is_404(world, api_as, receiver):
    endpoint_id = _register(api_as(world.admin_b), receiver.hook_url).json()["data"]["id"]
    client = api_as(world.admin_a)
    for method, path in [
        ("get", f"/api/v1/webhooks/{endpoint_id}"),
        ("patch", f"/api/v1/webhooks/{endpoint_id}"),
        ("delete", f"/api/v1/webhooks/{endpoint_id}"),
        ("post", f"/api/v1/webhooks/{endpoint_id}/rotate-secret"),
        ("post", f"/api/v1/webhooks/{endpoint_id}/test"),
        ("get", f"/api/v1/webhooks/{endpoint_id}/deliveries"),
    ]:
        assert getattr(client, method)(path, {"active": False}, format="json").status_code == 404
    assert client.get("/api/v1/webhooks").json()["meta"]["total"] == 0


@pytest.mark.parametrize(
    "payload",
    [
        {"url": "ftp://example.com/x", "event_types": ["job.completed"]},
        {"url": "http://user:pw@127.0.0.1/hook", "event_types": ["job.completed"]},
        {"url": "not a url", "event_types": ["job.completed"]},
        {"url": "http://127.0.0.1:9/x", "event_types": []},
        {"url": "http://127.0.0.1:9/x", "event_types": ["job.exploded"]},
        {"url": "http://127.0.0.1:9/x", "event_types": ["webhook.test"]},
        {"event_types": ["job.completed"]},
    ],
)
def test_invalid_registrations_are_422(world, api_as, payload):
    response = api_as(world.admin_a).post("/api/v1/webhooks", payload, format="json")
    assert response.status_code == 422


def test_https_is_required_outside_debug(world, api_as, settings):
    settings.WEBHOOK_REQUIRE_HTTPS = True
    response = _register(api_as(world.admin_a), "http://127.0.0.1:9/hook")
    assert response.status_code == 422
    assert "https" in response.json()["error"]["message"]


@pytest.fixture
def ssrf_protection(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    real = socket.getaddrinfo
    fake_dns = {
        "internal.example": "10.1.2.3",
        "metadata.example": "169.254.169.254",
        "public.example": "93.184.216.34",
    }

    def getaddrinfo(host, port, *args, **kwargs):
        if host in fake_dns:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (fake_dns[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:8000/hook",
        "http://internal.example/hook",
        "http://metadata.example/hook",
        "http://100.100.100.200/hook",
    ],
)
def test_private_and_metadata_addresses_are_refused(world, api_as, ssrf_protection, url):
    response = _register(api_as(world.admin_a), url)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["reason"] == "unsafe_url"


def test_public_address_is_accepted(world, api_as, ssrf_protection):
    assert _register(api_as(world.admin_a), "http://public.example/hook").status_code == 201


def test_unresolvable_host_is_refused(world, api_as):
    response = _register(api_as(world.admin_a), "http://does-not-exist.invalid/hook")
    assert response.status_code == 422
    assert "does not resolve" in response.json()["error"]["message"]


def test_patch_updates_and_reenabling_clears_the_failure_state(world, api_as, receiver):
    client = api_as(world.admin_a)
    endpoint_id = _register(client, receiver.hook_url).json()["data"]["id"]
    with tenant_context(world.org_a):
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(
            active=False, consecutive_failures=20, disabled_reason="The last 20 deliveries all failed."
        )
    shown = client.get(f"/api/v1/webhooks/{endpoint_id}").json()["data"]
    assert shown["active"] is False
    assert "20 deliveries" in shown["disabled_reason"]
    response = client.patch(
        f"/api/v1/webhooks/{endpoint_id}",
        {"active": True, "event_types": ["job.completed", "job.failed"], "description": "both"},
        format="json",
    )
    data = response.json()["data"]
    assert data["active"] is True
    assert data["consecutive_failures"] == 0
    assert data["disabled_reason"] == ""
    assert data["event_types"] == ["job.completed", "job.failed"]


def test_rotate_secret_returns_a_new_secret_and_the_overlap(world, api_as, receiver):
    client = api_as(world.admin_a)
    created = _register(client, receiver.hook_url).json()["data"]
    rotated = client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret").json()["data"]
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"]


def test_delete_removes_the_endpoint(world, api_as, receiver):
    client = api_as(world.admin_a)
    endpoint_id = _register(client, receiver.hook_url).json()["data"]["id"]
    assert client.delete(f"/api/v1/webhooks/{endpoint_id}").status_code == 204
    assert client.get(f"/api/v1/webhooks/{endpoint_id}").status_code == 404


def test_delete_goes_through_the_service_and_takes_the_delivery_log(world, api_as, receiver, broker, caplog):
    import logging

    from webhooks import services
    from webhooks.models import WebhookAttempt, WebhookDelivery

    client = api_as(world.admin_a)
    endpoint_id = _register(client, receiver.hook_url).json()["data"]["id"]
    with tenant_context(world.org_a):
        delivery = services.webhook_send_test(endpoint=WebhookEndpoint.objects.get(pk=endpoint_id))
        services.webhook_attempt(delivery_id=str(delivery.pk))
        assert WebhookAttempt.objects.filter(delivery=delivery).exists()
    caplog.set_level(logging.INFO, logger="webhooks.services")
    assert client.delete(f"/api/v1/webhooks/{endpoint_id}").status_code == 204
    with tenant_context(world.org_a):
        assert not WebhookDelivery.objects.exists()
        assert not WebhookAttempt.objects.exists()
        # The queued task of a deleted delivery finds nothing to do.
        assert services.webhook_attempt(delivery_id=str(delivery.pk)) is None
    deleted = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "webhook.endpoint_deleted"
    ]
    assert deleted == [{**deleted[0], "endpoint_id": endpoint_id, "deliveries": 1}]


def test_operator_sees_deliveries_and_redelivers_in_the_admin(world, client, receiver, broker):
    from tenants.models import User
    from webhooks import services
    from webhooks.models import WebhookDelivery

    with tenant_context(world.org_a):
        endpoint, _ = services.webhook_endpoint_create(url=receiver.hook_url, event_types=["job.completed"])
        delivery = services.webhook_send_test(endpoint=endpoint)
        services.webhook_attempt(delivery_id=delivery.pk)
    client.force_login(User.objects.create_superuser("root@nexus.test", "operator-password-123"))
    page = client.get(f"/admin/tenants/organisation/{world.org_a.pk}/webhooks/")
    assert page.status_code == 200
    assert delivery.pk.encode() in page.content
    assert receiver.hook_url.encode() in page.content
    response = client.post(page.request["PATH_INFO"], {"delivery_id": delivery.pk})
    assert response.status_code == 302
    with tenant_context(world.org_a):
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == "pending"
    change_page = client.get(f"/admin/tenants/organisation/{world.org_a.pk}/change/")
    assert b"/webhooks/" in change_page.content


def test_operator_filters_deliveries_in_the_admin(world, client, receiver, broker):
    from tenants.models import User
    from webhooks import services

    with tenant_context(world.org_a):
        first, _ = services.webhook_endpoint_create(url=receiver.hook_url, event_types=["job.completed"])
        second, _ = services.webhook_endpoint_create(url=receiver.hook_url + "?b", event_types=["job.failed"])
        tested = services.webhook_send_test(endpoint=first)
        (completed,) = services.webhook_publish(event_type="job.completed", data={})
        (failed,) = services.webhook_publish(event_type="job.failed", data={})
        services.webhook_attempt(delivery_id=tested.pk)
    client.force_login(User.objects.create_superuser("root@nexus.test", "operator-password-123"))
    url = f"/admin/tenants/organisation/{world.org_a.pk}/webhooks/"

    def shown(**filters):
        page = client.get(url, filters)
        assert page.status_code == 200
        return {d.pk for d in page.context["page"].object_list}

    assert shown() == {tested.pk, completed.pk, failed.pk}
    assert shown(status="succeeded") == {tested.pk}
    assert shown(event_type="job.completed") == {completed.pk}
    assert shown(endpoint=str(first.pk), status="pending") == {completed.pk}
    assert shown(endpoint=str(second.pk)) == {failed.pk}
    assert shown(status="no-such-status") == {tested.pk, completed.pk, failed.pk}


def test_webhook_receiver_command_verifies_and_fails_the_first_requests(world):
    import subprocess
    import sys
    import time as _time
    from pathlib import Path

    import httpx

    from webhooks.services import signed_headers

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "webhook_receiver",
            "--port",
            str(port),
            "--secret",
            secret,
            "--fail-first",
            "1",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = '{"type":"webhook.test","timestamp":"now","data":{}}'
        statuses = []
        for _ in range(50):
            try:
                for _attempt in range(2):
                    headers = signed_headers(message_id="msg_cli", body=body, secrets_=[secret])
                    statuses.append(
                        httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers).status_code
                    )
                bad = signed_headers(
                    message_id="msg_cli",
                    body=body,
                    secrets_=["whsec_" + base64.b64encode(b"x" * 32).decode()],
                )
                statuses.append(
                    httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=bad).status_code
                )
                break
            except httpx.ConnectError:
                _time.sleep(0.2)
        assert statuses == [500, 200, 400]
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "signature OK -> 500" in output
    assert "signature OK -> 200" in output
    assert "signature INVALID" in output


def test_a_replayed_registration_repeats_the_secret_but_stores_it_encrypted(world, api_as, receiver):
    from nexus.models import IdempotencyRecord

    client = api_as(world.admin_a)
    body = {"url": receiver.hook_url, "event_types": ["job.completed"]}
    first = client.post("/api/v1/webhooks", body, format="json", HTTP_IDEMPOTENCY_KEY="register-1")
    again = client.post("/api/v1/webhooks", body, format="json", HTTP_IDEMPOTENCY_KEY="register-1")
    secret = first.json()["data"]["secret"]
    assert secret.startswith("whsec_")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["secret"] == secret
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    with tenant_context(world.org_a):
        assert WebhookEndpoint.objects.count() == 1
        assert secret not in str(IdempotencyRecord.objects.get().response_body)


def test_a_retried_rotation_rotates_once_and_keeps_the_original_secret_valid(world, api_as, receiver):
    """A rotation whose answer was lost, retried with its key, must not rotate again: the
    second rotation would drop the secret receivers still verify with."""
    from webhooks.services import _secrets_for

    client = api_as(world.admin_a)
    created = _register(client, receiver.hook_url).json()["data"]
    path = f"/api/v1/webhooks/{created['id']}/rotate-secret"
    first = client.post(path, HTTP_IDEMPOTENCY_KEY="rotate-1")
    again = client.post(path, HTTP_IDEMPOTENCY_KEY="rotate-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["secret"] == first.json()["data"]["secret"] != created["secret"]
    with tenant_context(world.org_a):
        endpoint = WebhookEndpoint.objects.get(pk=created["id"])
        assert _secrets_for(endpoint) == [first.json()["data"]["secret"], created["secret"]]
