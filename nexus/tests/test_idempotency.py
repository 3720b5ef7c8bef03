"""Idempotency keys: replay without redoing the work, refuse reuse, lock while running."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.renderers import JSONRenderer

from billing.selectors import credits_balance
from jobs.models import Job
from nexus.idempotency import idempotency_purge_expired, request_fingerprint
from nexus.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

BODY = {"text": "Charge me once, however often my network makes me retry."}


def _post(client, key, body=BODY, path="/api/v1/summarize"):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_retry_with_the_same_key_replays_without_charging_again(funded, api_as):
    client = api_as(funded.member_a)
    first = _post(client, "order-42")
    second = _post(client, "order-42")
    assert first.status_code == second.status_code == 202
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert second.json()["data"] == first.json()["data"]
    with tenant_context(funded.org_a):
        assert Job.objects.count() == 1
        assert credits_balance() == 90


def test_same_key_with_another_body_is_refused(funded, api_as):
    client = api_as(funded.member_a)
    _post(client, "order-43")
    response = _post(client, "order-43", body={"text": "Something else entirely."})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


def _post_raw(client, key, raw: bytes):
    return client.generic(
        "POST", "/api/v1/summarize", raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_same_json_re_serialised_with_other_whitespace_and_key_order_replays(funded, api_as):
    client = api_as(funded.member_a)
    first = _post_raw(client, "order-50", b'{"text": "Charge me once.", "note": "retry"}')
    second = _post_raw(client, "order-50", b'{\n  "note":"retry",\n  "text":"Charge me once."\n}\n')
    assert first.status_code == second.status_code == 202
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["data"] == first.json()["data"]
    with tenant_context(funded.org_a):
        assert Job.objects.count() == 1
        assert credits_balance() == 90


def test_re_serialised_json_with_another_value_is_still_refused(funded, api_as):
    client = api_as(funded.member_a)
    _post_raw(client, "order-51", b'{"text": "Charge me once.", "note": "retry"}')
    response = _post_raw(client, "order-51", b'{"note":"retry","text":"Charge me twice."}')
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_a_record_stored_with_the_byte_fingerprint_still_replays(funded, api_as):
    # Records written before bodies were compared parsed hold SHA-256 of the exact bytes;
    # until they expire, a byte-identical retry matches them.
    raw = JSONRenderer().render(BODY)
    digest = hashlib.sha256()
    for part in (b"POST", b"/api/v1/summarize", raw):
        digest.update(part)
        digest.update(b"\0")
    with tenant_context(funded.org_a):
        IdempotencyRecord.objects.create(
            key="order-52",
            fingerprint=digest.hexdigest(),
            state=IdempotencyRecord.State.COMPLETED,
            response_status=202,
            response_body={"id": "stored"},
            expires_at=timezone.now() + timedelta(hours=24),
        )
    response = _post_raw(api_as(funded.member_a), "order-52", raw)
    assert response.status_code == 202
    assert response["Idempotent-Replayed"] == "true"
    assert response.json()["data"] == {"id": "stored"}


def test_same_key_on_another_endpoint_is_refused(funded, api_as):
    client = api_as(funded.member_a)
    _post(client, "order-44")
    assert _post(client, "order-44", path="/api/v1/analyze").status_code == 422


def test_same_key_while_the_first_request_runs_is_409(funded, api_as):
    # The first request has claimed the key and not finished yet.
    with tenant_context(funded.org_a):
        IdempotencyRecord.objects.create(
            key="order-45",
            fingerprint=request_fingerprint("POST", "/api/v1/summarize", JSONRenderer().render(BODY)),
            expires_at=timezone.now() + timedelta(hours=24),
        )
    response = _post(api_as(funded.member_a), "order-45")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"reason": "request_in_progress"}
    with tenant_context(funded.org_a):
        assert Job.objects.count() == 0


def test_refusals_are_stored_and_replayed_too(world, api_as):
    client = api_as(world.member_a)  # no credits
    first = _post(client, "order-46")
    second = _post(client, "order-46")
    assert first.status_code == second.status_code == 402
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["error"] == first.json()["error"]


def test_server_errors_are_not_stored(funded, api_as, monkeypatch):
    from jobs import services

    client = api_as(funded.member_a)
    original = services.job_create
    monkeypatch.setattr(services, "job_create", lambda **kw: (_ for _ in ()).throw(RuntimeError("boom")))
    assert _post(client, "order-47").status_code == 500
    monkeypatch.setattr(services, "job_create", original)
    retry = _post(client, "order-47")
    assert retry.status_code == 202
    assert "Idempotent-Replayed" not in retry


def test_keys_are_per_organisation(funded, api_as):
    _post(api_as(funded.member_a), "shared-key")
    response = _post(api_as(funded.member_b), "shared-key")
    assert response.status_code == 202
    assert "Idempotent-Replayed" not in response


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve-key", "line\nbreak"])
def test_malformed_keys_are_422(funded, api_as, key):
    client = api_as(funded.member_a)
    response = client.post("/api/v1/summarize", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["error"]["details"]["fields"]


def test_expired_and_abandoned_keys_are_released(funded, api_as, settings):
    client = api_as(funded.member_a)
    _post(client, "order-48")
    with tenant_context(funded.org_a):
        IdempotencyRecord.objects.filter(key="order-48").update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    assert "Idempotent-Replayed" not in _post(client, "order-48")
    with tenant_context(funded.org_a):
        IdempotencyRecord.objects.filter(key="order-48").update(
            state="in_progress",
            created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS + 1),
        )
    assert _post(client, "order-48").status_code == 202


def test_purge_removes_expired_records(funded, api_as):
    client = api_as(funded.member_a)
    _post(client, "old")
    _post(client, "fresh", body={"text": "another"})
    with tenant_context(funded.org_a):
        IdempotencyRecord.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(minutes=1))
        assert idempotency_purge_expired() == 1
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_requests_without_a_key_are_untouched(funded, api_as):
    client = api_as(funded.member_a)
    client.post("/api/v1/summarize", BODY, format="json")
    client.post("/api/v1/summarize", BODY, format="json")
    with tenant_context(funded.org_a):
        assert Job.objects.count() == 2
        assert not IdempotencyRecord.objects.exists()
