"""The reconciliation and the webhook racing for one paid purchase, on committed data with
separate connections: the credits arrive exactly once."""

import threading
from datetime import timedelta

from django.db import connections
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction, Purchase
from billing.public.models import CreditPack
from billing.selectors import credits_balance
from billing.services.purchases import checkout_start, purchases_reconcile
from billing.tests.stripe_stub import WEBHOOK_SECRET, StripeStub, event, signed


def _race_once(org, stripe_stub, pack) -> Purchase:
    with tenant_context(org):
        purchase = checkout_start(user=org.admin, pack_id=pack.pk, org_id=org.id)
        Purchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    body, header = signed(event("checkout.session.completed", stripe_stub.pay(purchase.stripe_session_id)))
    barrier = threading.Barrier(2)
    results = {}

    def webhook():
        barrier.wait()
        try:
            response = Client().post(
                "/stripe/webhook", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            results["webhook"] = response.status_code
        finally:
            connections.close_all()

    def reconcile():
        barrier.wait()
        try:
            with tenant_context(org):
                results["reconcile"] = purchases_reconcile()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=webhook), threading.Thread(target=reconcile)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results["webhook"] == 200
    return purchase


def test_reconciliation_racing_the_webhook_fulfils_once(live_org, settings):
    with StripeStub() as stripe_stub:
        settings.STRIPE_SECRET_KEY = "sk_test_stand_in"
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = stripe_stub.url
        pack = CreditPack.objects.get(credits=100)
        rounds = 5
        for _ in range(rounds):
            purchase = _race_once(live_org, stripe_stub, pack)
            with tenant_context(live_org):
                assert CreditTransaction.objects.filter(kind="purchase", purchase_id=purchase.pk).count() == 1
        with tenant_context(live_org):
            assert credits_balance() == 100 * rounds
            assert Purchase.objects.filter(status="completed").count() == rounds
