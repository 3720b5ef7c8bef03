"""Buying credit packs with Stripe Checkout, exactly once.

Purchases live in the organisation's schema; the public CheckoutIndex maps a Stripe session
or payment back to its organisation for the (public) webhook. Fulfilment locks the purchase
row and only moves a pending purchase, and the ledger allows one purchase row per purchase,
so the webhook, its retries and the reconciliation can all race and credits arrive once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import stripe
import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from auditlog.context import Actor, current_actor
from auditlog.models import ActorKind
from auditlog.services import audit_record
from billing.models import PURCHASE_TRANSITIONS, Purchase, PurchaseStatus
from billing.public.models import CheckoutIndex, CreditPack
from billing.selectors import credits_balance
from billing.services.ledger import credits_adjust, credits_purchase
from nexus.access import access_by_id
from nexus.api.errors import AppError, ServiceUnavailable
from tenants.models import User
from webhooks.services import webhook_publish

log = structlog.get_logger(__name__)

ABANDONED_CHECKOUT_AFTER = timedelta(hours=25)


class BillingUnavailable(ServiceUnavailable):
    code = "BILLING_UNAVAILABLE"
    default_message = (
        "Billing is not configured on this server, so credits cannot be bought here. "
        "Ask an operator to grant credits."
    )


class PaymentProviderUnavailable(ServiceUnavailable):
    code = "PAYMENT_PROVIDER_UNAVAILABLE"
    default_message = "Stripe could not be reached. Nothing was charged; please try again in a minute."


class PaymentProviderError(AppError):
    status_code = 502
    code = "PAYMENT_PROVIDER_ERROR"
    default_message = "Stripe refused to start the checkout. Nothing was charged."


def billing_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def stripe_client() -> stripe.StripeClient:
    """The stripe library's own client: its retries (connection errors, 409, 429, 5xx, with
    backoff) are the transient-error policy; every create carries our idempotency key."""
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses=base,
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
    )


TRANSIENT_STRIPE_ERRORS = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


def _transition(purchase: Purchase, target: str) -> bool:
    if target in PURCHASE_TRANSITIONS[purchase.status]:
        return True
    log.warning(
        "billing.transition_refused",
        purchase_id=str(purchase.pk),
        current=purchase.status,
        requested=target,
    )
    return False


# Stripe's webhooks, acting for the organisation's bank: the actor of what they change.
STRIPE = Actor(kind=ActorKind.SYSTEM, label="stripe")


def _stripe_actor() -> Actor:
    """Stripe, with the address, user agent and request id of its webhook request (none
    outside a request), so the event can be matched with the request log."""
    request = current_actor()
    return STRIPE.but(ip=request.ip, user_agent=request.user_agent, request_id=request.request_id)


# --- Starting a checkout ---------------------------------------------------------------------


def checkout_start(*, user: User, pack_id: uuid.UUID | str, org_id: uuid.UUID) -> Purchase:
    if not billing_configured():
        raise BillingUnavailable()
    pack = access_by_id(
        CreditPack.objects.filter(active=True),
        pack_id,
        not_found="No such credit pack (it may have been withdrawn).",
    )

    purchase = Purchase.objects.create(
        pack_id=pack.pk,
        pack_name=pack.name,
        credits=pack.credits,
        amount_cents=pack.price_cents,
        currency=pack.currency,
        created_by_id=user.pk,
    )
    metadata = {"organisation_id": str(org_id), "purchase_id": str(purchase.pk)}
    params = {
        "mode": "payment",
        "client_reference_id": str(purchase.pk),
        "customer_email": user.email,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": pack.currency,
                    "unit_amount": pack.price_cents,
                    "product_data": {"name": f"{pack.name}: {pack.credits:,} NexusAPI credits"},
                },
            }
        ],
        "success_url": settings.BILLING_SUCCESS_URL.format(purchase_id=purchase.pk),
        "cancel_url": settings.BILLING_CANCEL_URL.format(purchase_id=purchase.pk),
    }
    try:
        session = stripe_client().v1.checkout.sessions.create(
            params=params, options={"idempotency_key": f"checkout-{purchase.pk}"}
        )
    except TRANSIENT_STRIPE_ERRORS as exc:
        purchase.delete()
        log.warning("billing.stripe_unavailable", error=type(exc).__name__)
        raise PaymentProviderUnavailable() from exc
    except stripe.StripeError as exc:
        purchase.delete()
        log.error(
            "billing.stripe_refused", error=type(exc).__name__, message=getattr(exc, "user_message", None)
        )
        raise PaymentProviderError() from exc

    purchase.stripe_session_id = session.id
    purchase.checkout_url = session.url or ""
    with transaction.atomic():
        purchase.save(update_fields=["stripe_session_id", "checkout_url"])
        CheckoutIndex.objects.create(session_id=session.id, organisation_id=org_id, purchase_id=purchase.pk)
        audit_record(
            action="billing.checkout_started",
            organisation_id=org_id,
            target_type="purchase",
            target_id=purchase.pk,
            target_label=pack.name,
            facts={"credits": pack.credits, "amount_cents": pack.price_cents, "currency": pack.currency},
        )
    log.info("billing.checkout_started", purchase_id=str(purchase.pk), pack=pack.name, session_id=session.id)
    return purchase


# --- Applying what Stripe tells us -----------------------------------------------------------


def _locked(purchase_id) -> Purchase | None:
    return Purchase.objects.select_for_update().filter(pk=purchase_id).first()


def purchase_fulfil(*, purchase_id, payment_intent_id: str = "") -> Purchase | None:
    """Complete a paid purchase and add its credits, once. Returns the purchase when this
    call completed it, None when there was nothing to do."""
    with transaction.atomic():
        purchase = _locked(purchase_id)
        if purchase is None:
            log.warning("billing.unknown_purchase", purchase_id=str(purchase_id))
            return None
        if purchase.status == PurchaseStatus.COMPLETED or not _transition(purchase, PurchaseStatus.COMPLETED):
            return None
        purchase.status = PurchaseStatus.COMPLETED
        purchase.completed_at = timezone.now()
        purchase.stripe_payment_intent_id = payment_intent_id or purchase.stripe_payment_intent_id
        purchase.save(update_fields=["status", "completed_at", "stripe_payment_intent_id"])
        price = f"{purchase.amount_cents / 100:.2f} {purchase.currency.upper()}"
        credits_purchase(
            amount=purchase.credits,
            purchase_id=purchase.pk,
            reference=f"{purchase.pack_name} pack, {price}",
            actor_label="stripe",
        )
        if payment_intent_id:
            CheckoutIndex.objects.filter(purchase_id=purchase.pk).update(payment_intent_id=payment_intent_id)
        webhook_publish(event_type="credits.purchased", subject=purchase)
    log.info("billing.purchase_completed", purchase_id=str(purchase.pk), credits=purchase.credits)
    return purchase


def purchase_expire(*, purchase_id) -> Purchase | None:
    with transaction.atomic():
        purchase = _locked(purchase_id)
        if purchase is None or purchase.status == PurchaseStatus.EXPIRED:
            return None
        if not _transition(purchase, PurchaseStatus.EXPIRED):
            return None
        purchase.status = PurchaseStatus.EXPIRED
        purchase.expired_at = timezone.now()
        purchase.save(update_fields=["status", "expired_at"])
    log.info("billing.purchase_expired", purchase_id=str(purchase.pk))
    return purchase


def purchase_refund(
    *, purchase_id, amount_refunded: int, amount: int, fully_refunded: bool
) -> Purchase | None:
    """Take back credits in proportion to the money returned (cumulative over partial
    refunds). Credits already spent cannot be taken: the balance never goes negative, and
    the part that could not be reversed is recorded as refund_shortfall for operators."""
    with transaction.atomic():
        purchase = _locked(purchase_id)
        if purchase is None:
            return None
        if purchase.status not in (PurchaseStatus.COMPLETED, PurchaseStatus.REFUNDED):
            _transition(purchase, PurchaseStatus.REFUNDED)  # logs the refusal
            return None
        target = (
            purchase.credits if fully_refunded else (purchase.credits * amount_refunded) // max(amount, 1)
        )
        owed = max(0, target - purchase.credits_reversed - purchase.refund_shortfall)
        if owed:
            taken = min(owed, credits_balance())
            if taken:
                credits_adjust(
                    amount=-taken,
                    reason=f"refund of {purchase.pack_name} purchase {purchase.pk}",
                    actor_label="stripe",
                    purchase_id=purchase.pk,
                )
            purchase.credits_reversed += taken
            purchase.refund_shortfall += owed - taken
            if owed > taken:
                log.warning(
                    "billing.refund_shortfall",
                    purchase_id=str(purchase.pk),
                    credits_not_reversed=owed - taken,
                )
        fields = ["credits_reversed", "refund_shortfall"]
        status_changes = fully_refunded and purchase.status == PurchaseStatus.COMPLETED
        if status_changes:
            purchase.status = PurchaseStatus.REFUNDED
            purchase.refunded_at = timezone.now()
            fields += ["status", "refunded_at"]
        purchase.save(update_fields=fields)
        if owed or status_changes:  # Stripe tells of one refund in several events
            audit_record(
                action="billing.refunded",
                target_type="purchase",
                target_id=purchase.pk,
                target_label=purchase.pack_name,
                facts={
                    "amount_refunded_cents": amount_refunded,
                    "fully_refunded": fully_refunded,
                    "credits_reversed": purchase.credits_reversed,
                    "refund_shortfall": purchase.refund_shortfall,
                },
                actor=_stripe_actor(),
            )
    log.info("billing.purchase_refunded", purchase_id=str(purchase.pk), reversed=purchase.credits_reversed)
    return purchase


def purchase_reconcile(*, purchase: Purchase) -> str:
    """Ask Stripe about one pending purchase and apply the answer. Returns what happened."""
    session = stripe_client().v1.checkout.sessions.retrieve(purchase.stripe_session_id)
    if session.payment_status in ("paid", "no_payment_required"):
        done = purchase_fulfil(purchase_id=purchase.pk, payment_intent_id=payment_intent_id_of(session))
        return "fulfilled" if done else "unchanged"
    if session.status == "expired":
        return "expired" if purchase_expire(purchase_id=purchase.pk) else "unchanged"
    return "still_open"


def payment_intent_id_of(session) -> str:
    intent = getattr(session, "payment_intent", None) or ""
    return intent if isinstance(intent, str) else getattr(intent, "id", "")


def purchases_reconcile() -> dict[str, int]:
    """Pending purchases older than BILLING_RECONCILE_AFTER_MINUTES, checked with Stripe."""
    if not billing_configured():
        return {}
    cutoff = timezone.now() - timedelta(minutes=settings.BILLING_RECONCILE_AFTER_MINUTES)
    counts: dict[str, int] = {}
    # Checkouts that stopped before Stripe's session id was saved: the customer never got
    # the payment page. Should Stripe report one paid anyway, the webhook finds the purchase
    # from the session's metadata, so they are expired only once Stripe's own session has
    # (Checkout sessions live 24 hours).
    abandoned_before = timezone.now() - ABANDONED_CHECKOUT_AFTER
    for purchase_id in Purchase.objects.filter(
        status=PurchaseStatus.PENDING, created_at__lt=abandoned_before, stripe_session_id=""
    ).values_list("pk", flat=True)[:200]:
        if purchase_expire(purchase_id=purchase_id):
            counts["abandoned"] = counts.get("abandoned", 0) + 1
    for purchase in Purchase.objects.filter(status=PurchaseStatus.PENDING, created_at__lt=cutoff).exclude(
        stripe_session_id=""
    )[:200]:
        try:
            outcome = purchase_reconcile(purchase=purchase)
        except stripe.StripeError as exc:
            log.warning("billing.reconcile_failed", purchase_id=str(purchase.pk), error=type(exc).__name__)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        log.info("billing.reconciled", **counts)
    return counts
