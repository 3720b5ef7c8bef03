"""Buying credits with Stripe Checkout: the real stripe library against a local stand-in,
and signed webhook events made with a test secret."""

import logging
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction, Purchase
from billing.public.models import CreditPack, StripeEvent
from billing.selectors import credits_balance
from billing.services import credits_deduct
from billing.services.purchases import purchases_reconcile
from billing.tests.stripe_stub import WEBHOOK_SECRET, StripeStub, event, signed

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe_stub(settings):
    with StripeStub() as stub:
        settings.STRIPE_SECRET_KEY = "sk_test_stand_in"
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = stub.url
        yield stub


@pytest.fixture
def pack():
    return CreditPack.objects.get(credits=500)


def _checkout(client, pack, **headers):
    return client.post("/api/v1/billing/checkout", {"pack": str(pack.pk)}, format="json", **headers)


def _send(client, payload, **kwargs):
    body, header = signed(payload, **kwargs)
    return client.post("/stripe/webhook", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def _purchase_rows(org):
    with tenant_context(org):
        return list(CreditTransaction.objects.filter(kind="purchase"))


def test_packs_are_seeded_and_listed(world, api_as):
    packs = api_as(world.member_a).get("/api/v1/billing/packs").json()["data"]
    assert [(p["credits"], p["price_cents"], p["price"]) for p in packs] == [
        (100, 1000, "10.00"),
        (500, 4500, "45.00"),
        (2000, 16000, "160.00"),
    ]


def test_without_stripe_keys_checkout_is_503_and_says_why(world, api_as, pack, settings):
    settings.STRIPE_SECRET_KEY = ""
    response = _checkout(api_as(world.admin_a), pack)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "BILLING_UNAVAILABLE"
    assert "not configured" in error["message"]


def test_member_cannot_buy(world, api_as, pack, stripe_stub):
    assert _checkout(api_as(world.member_a), pack).status_code == 403
    assert stripe_stub.sessions == {}


def test_admin_starts_a_checkout_session(world, api_as, pack, stripe_stub):
    response = _checkout(api_as(world.admin_a), pack)
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["status"] == "pending"
    assert data["credits"] == 500
    assert data["amount_cents"] == 4500
    (session,) = stripe_stub.sessions.values()
    assert data["checkout_url"] == session["url"]
    assert session["mode"] == "payment"
    assert session["client_reference_id"] == data["id"]
    assert session["metadata"] == {"organisation_id": str(world.org_a.id), "purchase_id": data["id"]}
    assert session["amount_total"] == 4500
    assert session["currency"] == "usd"
    assert stripe_stub.requests[0].headers["idempotency-key"] == f"checkout-{data['id']}"
    listed = api_as(world.member_a).get("/api/v1/billing/purchases").json()["data"]
    assert [p["id"] for p in listed] == [data["id"]]


def test_checkout_honours_idempotency_key(world, api_as, pack, stripe_stub):
    client = api_as(world.admin_a)
    first = _checkout(client, pack, HTTP_IDEMPOTENCY_KEY="buy-1")
    second = _checkout(client, pack, HTTP_IDEMPOTENCY_KEY="buy-1")
    assert second["Idempotent-Replayed"] == "true"
    assert first.json()["data"] == second.json()["data"]
    assert len(stripe_stub.sessions) == 1


def test_unknown_or_withdrawn_pack(world, api_as, pack, stripe_stub):
    client = api_as(world.admin_a)
    CreditPack.objects.filter(pk=pack.pk).update(active=False)
    assert _checkout(client, pack).status_code == 404
    assert client.post("/api/v1/billing/checkout", {"pack": "nope"}, format="json").status_code == 422


def test_transient_stripe_errors_are_retried(world, api_as, pack, stripe_stub):
    stripe_stub.failures = [500, 503]
    response = _checkout(api_as(world.admin_a), pack)
    assert response.status_code == 201
    assert len(stripe_stub.requests) == 3
    assert len(stripe_stub.sessions) == 1


def test_stripe_down_is_a_clear_503_and_leaves_nothing(world, api_as, pack, stripe_stub):
    stripe_stub.failures = [500, 500, 500]
    response = _checkout(api_as(world.admin_a), pack)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "PAYMENT_PROVIDER_UNAVAILABLE"
    with tenant_context(world.org_a):
        assert not Purchase.objects.exists()


def test_stripe_refusal_is_a_clear_502(world, api_as, pack, stripe_stub):
    stripe_stub.failures = [400]
    response = _checkout(api_as(world.admin_a), pack)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "PAYMENT_PROVIDER_ERROR"
    assert "Stand-in" not in response.content.decode()
    with tenant_context(world.org_a):
        assert not Purchase.objects.exists()


# --- The webhook -----------------------------------------------------------------------------


@pytest.fixture
def started(world, api_as, pack, stripe_stub):
    data = _checkout(api_as(world.admin_a), pack).json()["data"]
    session_id = next(iter(stripe_stub.sessions))
    return data["id"], session_id


def test_paid_session_fulfils_once(world, client, stripe_stub, started):
    purchase_id, session_id = started
    completed = event("checkout.session.completed", stripe_stub.pay(session_id))
    response = _send(client, completed)
    assert response.status_code == 200
    assert response.json()["outcome"] == "fulfilled"
    with tenant_context(world.org_a):
        purchase = Purchase.objects.get(pk=purchase_id)
        assert purchase.status == "completed"
        assert purchase.stripe_payment_intent_id.startswith("pi_")
        assert credits_balance() == 500
    (row,) = _purchase_rows(world.org_a)
    assert row.amount == 500
    assert str(row.purchase_id) == purchase_id
    assert row.actor_label == "stripe"

    # The same event again, and replayed with a fresh signature: 200, nothing changes.
    again = _send(client, completed)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert _send(client, completed, timestamp=int(time.time()) + 1).json()["duplicate"] is True
    # Another event for the same paid session (an async success) finds it applied.
    later = event("checkout.session.async_payment_succeeded", stripe_stub.sessions[session_id])
    assert _send(client, later).json()["outcome"] == "already_applied"
    assert len(_purchase_rows(world.org_a)) == 1
    assert StripeEvent.objects.filter(event_id=completed["id"]).get().organisation_id == world.org_a.id


def test_fulfilment_publishes_credits_purchased(
    world, client, stripe_stub, started, broker, django_capture_on_commit_callbacks
):
    from webhooks import services as webhook_services
    from webhooks.models import WebhookDelivery

    schemas = broker.watch("webhooks.deliver", lambda message: message.schema)
    with tenant_context(world.org_a):
        webhook_services.webhook_endpoint_create(
            url="http://127.0.0.1:9/hook", event_types=["credits.purchased"]
        )
    with django_capture_on_commit_callbacks(execute=True):
        _send(client, event("checkout.session.completed", stripe_stub.pay(started[1])))
    # Sent after the webhook view left the organisation's context, still for its schema.
    assert schemas == [world.org_a.schema_name]
    with tenant_context(world.org_a):
        (delivery,) = WebhookDelivery.objects.all()
    assert delivery.event_type == "credits.purchased"
    assert delivery.payload["data"]["status"] == "completed"


def test_unpaid_completion_waits_for_payment(world, client, stripe_stub, started):
    session = stripe_stub.sessions[started[1]]
    assert _send(client, event("checkout.session.completed", session)).json()["outcome"] == "awaiting_payment"
    with tenant_context(world.org_a):
        assert Purchase.objects.get().status == "pending"


def test_expired_session_expires_the_purchase(world, client, stripe_stub, started):
    assert _send(client, event("checkout.session.expired", stripe_stub.expire(started[1]))).status_code == 200
    with tenant_context(world.org_a):
        assert Purchase.objects.get().status == "expired"
    assert _purchase_rows(world.org_a) == []


def test_out_of_order_expiry_after_payment_is_refused_and_logged(world, client, stripe_stub, started, caplog):
    caplog.set_level(logging.WARNING, logger="billing.services.purchases")
    _send(client, event("checkout.session.completed", stripe_stub.pay(started[1])))
    assert (
        _send(client, event("checkout.session.expired", stripe_stub.sessions[started[1]])).status_code == 200
    )
    with tenant_context(world.org_a):
        assert Purchase.objects.get().status == "completed"
    assert any(
        isinstance(r.msg, dict) and r.msg.get("event") == "billing.transition_refused" for r in caplog.records
    )


def test_refund_that_overtakes_the_completion(world, client, stripe_stub, started):
    stripe_stub.pay(started[1])
    refund = event("charge.refunded", stripe_stub.charge(started[1], refunded_cents=4500))
    assert _send(client, refund).json()["outcome"] == "refunded"
    with tenant_context(world.org_a):
        purchase = Purchase.objects.get()
        assert purchase.status == "refunded"
        assert purchase.credits_reversed == 500
        assert credits_balance() == 0
    # The completion arriving last changes nothing.
    assert (
        _send(client, event("checkout.session.completed", stripe_stub.sessions[started[1]])).status_code
        == 200
    )
    assert len(_purchase_rows(world.org_a)) == 1
    with tenant_context(world.org_a):
        assert credits_balance() == 0


def test_refund_after_credits_were_spent_records_the_shortfall(world, client, stripe_stub, started):
    _send(client, event("checkout.session.completed", stripe_stub.pay(started[1])))
    with tenant_context(world.org_a):
        import uuid

        credits_deduct(job_id=uuid.uuid4(), amount=420, actor_label="user:x")
    _send(client, event("charge.refunded", stripe_stub.charge(started[1], refunded_cents=4500)))
    with tenant_context(world.org_a):
        purchase = Purchase.objects.get()
        assert purchase.status == "refunded"
        assert purchase.credits_reversed == 80
        assert purchase.refund_shortfall == 420
        assert credits_balance() == 0
        adjustment = CreditTransaction.objects.get(kind="adjustment")
        assert adjustment.amount == -80
        assert adjustment.purchase_id == purchase.pk


def test_partial_refunds_reverse_credits_in_proportion(world, client, stripe_stub, started):
    _send(client, event("checkout.session.completed", stripe_stub.pay(started[1])))
    _send(client, event("charge.refunded", stripe_stub.charge(started[1], refunded_cents=900)))  # 20 %
    with tenant_context(world.org_a):
        purchase = Purchase.objects.get()
        assert purchase.status == "completed"
        assert purchase.credits_reversed == 100
        assert credits_balance() == 400
    _send(client, event("charge.refunded", stripe_stub.charge(started[1], refunded_cents=4500)))
    with tenant_context(world.org_a):
        purchase = Purchase.objects.get()
        assert purchase.status == "refunded"
        assert purchase.credits_reversed == 500
        assert credits_balance() == 0


@pytest.mark.parametrize(
    "tamper",
    ["bad_signature", "wrong_secret", "missing_header", "stale", "not_json"],
)
def test_bad_signatures_are_400_and_change_nothing(world, client, stripe_stub, started, tamper):
    payload = event("checkout.session.completed", stripe_stub.pay(started[1]))
    body, header = signed(payload)
    if tamper == "bad_signature":
        header = header[:-4] + "0000"
    elif tamper == "wrong_secret":
        body, header = signed(payload, secret="whsec_someone_else")
    elif tamper == "stale":
        body, header = signed(payload, timestamp=int(time.time()) - 301)
    elif tamper == "not_json":
        body, header = signed({"x": 1})
        body = b"{not json"
    headers = {} if tamper == "missing_header" else {"HTTP_STRIPE_SIGNATURE": header}
    response = client.post("/stripe/webhook", body, content_type="application/json", **headers)
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()
    with tenant_context(world.org_a):
        assert Purchase.objects.get().status == "pending"


def test_unknown_event_types_are_acknowledged(world, client, stripe_stub):
    response = _send(client, event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    assert StripeEvent.objects.get().type == "customer.created"


def test_reconciliation_fulfils_a_paid_purchase_whose_webhook_never_came(world, stripe_stub, started):
    stripe_stub.pay(started[1])
    with tenant_context(world.org_a):
        assert purchases_reconcile() == {}  # too recent to ask about
        Purchase.objects.update(created_at=timezone.now() - timedelta(minutes=16))
        assert purchases_reconcile() == {"fulfilled": 1}
        assert credits_balance() == 500
        assert purchases_reconcile() == {}


def test_reconciliation_expires_and_leaves_open_sessions(world, api_as, pack, stripe_stub, started):
    _checkout(api_as(world.admin_a), pack)
    second_session = list(stripe_stub.sessions)[1]
    stripe_stub.expire(second_session)
    with tenant_context(world.org_a):
        Purchase.objects.update(created_at=timezone.now() - timedelta(minutes=16))
        assert purchases_reconcile() == {"still_open": 1, "expired": 1}


@pytest.fixture
def interrupted(world, api_as, pack, stripe_stub):
    """A checkout that stopped after Stripe created the session, before its id was saved."""
    from billing.public.models import CheckoutIndex

    data = _checkout(api_as(world.admin_a), pack).json()["data"]
    session_id = next(iter(stripe_stub.sessions))
    CheckoutIndex.objects.filter(session_id=session_id).delete()
    with tenant_context(world.org_a):
        Purchase.objects.filter(pk=data["id"]).update(stripe_session_id="", checkout_url="")
    return data["id"], session_id


def test_a_paid_session_we_never_indexed_is_found_from_its_metadata(world, client, stripe_stub, interrupted):
    purchase_id, session_id = interrupted
    response = _send(client, event("checkout.session.completed", stripe_stub.pay(session_id)))
    assert response.status_code == 200
    assert response.json()["outcome"] == "fulfilled"
    with tenant_context(world.org_a):
        purchase = Purchase.objects.get(pk=purchase_id)
        assert purchase.status == "completed"
        assert purchase.stripe_session_id == session_id
        assert credits_balance() == 500


def test_an_event_racing_the_one_that_tied_the_session_finds_its_index(
    world, client, stripe_stub, interrupted, monkeypatch
):
    """Two events for an un-indexed session: the second looked for the index before the
    first committed, and its tie-up finds nothing left to tie; it must use the index the
    first created, not drop the event as unknown."""
    from billing.services import stripe_events

    _purchase_id, session_id = interrupted
    session = stripe_stub.pay(session_id)
    first = _send(client, event("checkout.session.async_payment_succeeded", session))
    assert first.json()["outcome"] == "fulfilled"
    real_lookup, calls = stripe_events._index_for_session, []

    def lookup_before_the_first_committed(session_id):
        calls.append(session_id)
        return None if len(calls) == 1 else real_lookup(session_id)

    monkeypatch.setattr(stripe_events, "_index_for_session", lookup_before_the_first_committed)
    again = _send(client, event("checkout.session.completed", session))
    assert again.status_code == 200
    assert again.json()["outcome"] == "already_applied"
    assert len(calls) == 2
    with tenant_context(world.org_a):
        assert credits_balance() == 500


def test_metadata_naming_another_organisations_purchase_is_not_applied(
    world, client, stripe_stub, interrupted
):
    purchase_id, session_id = interrupted
    session = stripe_stub.pay(session_id)
    session["metadata"] = {"organisation_id": str(world.org_b.id), "purchase_id": purchase_id}
    response = _send(client, event("checkout.session.completed", session))
    assert response.json()["outcome"] == "unknown_session"
    for org in (world.org_a, world.org_b):
        with tenant_context(org):
            assert credits_balance() == 0


def test_reconciliation_expires_checkouts_that_never_reached_stripe_after_a_day(
    world, stripe_stub, interrupted
):
    purchase_id, _ = interrupted
    with tenant_context(world.org_a):
        Purchase.objects.update(created_at=timezone.now() - timedelta(hours=2))
        assert purchases_reconcile() == {}  # Stripe's session may still be paid
        Purchase.objects.update(created_at=timezone.now() - timedelta(hours=26))
        assert purchases_reconcile() == {"abandoned": 1}
        assert Purchase.objects.get(pk=purchase_id).status == "expired"


def test_another_organisations_purchases_are_invisible(world, api_as, stripe_stub, started):
    assert api_as(world.member_b).get("/api/v1/billing/purchases").json()["meta"]["total"] == 0


def test_buy_page_with_a_malformed_pack_id_is_a_message_not_a_500(world, stripe_stub):
    from django.test import Client

    client = Client()
    client.force_login(world.admin_a)
    response = client.post("/billing/buy", {"pack": "not-a-uuid"}, follow=True)
    assert response.status_code == 200
    assert "No such credit pack" in response.content.decode()
