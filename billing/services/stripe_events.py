"""Stripe's events, applied exactly once (the Stripe webhook's service).

Runs in the public schema (Stripe is not an organisation). In one transaction the event id
is recorded and the event applied inside the organisation's schema it concerns (found from
the public CheckoutIndex, or from the session's metadata, or by asking Stripe which session
a payment paid). A duplicate or replayed event finds its id and changes nothing; a failure
rolls both back and is raised, so Stripe sends the event again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from django.db import transaction
from django_tenants.utils import tenant_context

from billing.models import Purchase, PurchaseStatus
from billing.public.models import CheckoutIndex, StripeEvent
from billing.services.purchases import (
    payment_intent_id_of,
    purchase_expire,
    purchase_fulfil,
    purchase_reconcile,
    purchase_refund,
    stripe_client,
)
from tenants.models import Organisation

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StripeEventOutcome:
    outcome: str  # fulfilled, already_applied, refunded, ignored, unknown_session, ...
    duplicate: bool = False


def stripe_event_receive(*, event) -> StripeEventOutcome:
    """Record and apply one verified Stripe event, once. Raises whatever stopped it (the
    transaction is rolled back, so the retry Stripe sends starts afresh)."""
    with transaction.atomic():
        record, created = StripeEvent.objects.get_or_create(event_id=event.id, defaults={"type": event.type})
        if not created:
            log.info("stripe.duplicate_event", event_id=event.id, type=event.type)
            return StripeEventOutcome(outcome=record.outcome, duplicate=True)
        outcome, org = _apply(event)
        record.outcome = outcome
        record.organisation_id = org.pk if org else None
        record.save(update_fields=["outcome", "organisation_id"])
    log.info("stripe.event", event_id=event.id, type=event.type, outcome=outcome)
    return StripeEventOutcome(outcome=outcome)


def _index_for_session(session_id: str) -> CheckoutIndex | None:
    return CheckoutIndex.objects.filter(session_id=session_id).first()


def _index_from_metadata(session) -> CheckoutIndex | None:
    """A session we never indexed: checkout_start stopped between Stripe creating the
    session and our saving its id. The session's metadata (ours, in an event Stripe signed)
    names the organisation and the purchase; the purchase is tied to the session now."""
    metadata = getattr(session, "metadata", None)
    try:
        org_id = uuid.UUID(str(metadata["organisation_id"]))
        purchase_id = uuid.UUID(str(metadata["purchase_id"]))
    except (TypeError, KeyError, ValueError):
        return None
    org = Organisation.objects.filter(pk=org_id).first()
    if org is None:
        return None
    with tenant_context(org):
        tied = Purchase.objects.filter(pk=purchase_id, stripe_session_id="").update(
            stripe_session_id=session.id
        )
    if not tied:
        # Another event for the same session may have tied it a moment ago (our UPDATE
        # waited for its commit): its index is the answer.
        return _index_for_session(session.id)
    log.warning("stripe.session_indexed_late", session_id=session.id, purchase_id=str(purchase_id))
    return CheckoutIndex.objects.create(
        session_id=session.id, organisation_id=org.pk, purchase_id=purchase_id
    )


def _index_for_payment(payment_intent_id: str) -> CheckoutIndex | None:
    index = CheckoutIndex.objects.filter(payment_intent_id=payment_intent_id).first()
    if index is not None or not payment_intent_id:
        return index
    # The refund overtook the completion: ask Stripe which session this payment paid.
    sessions = stripe_client().v1.checkout.sessions.list(params={"payment_intent": payment_intent_id})
    for session in sessions.data:
        index = _index_for_session(session.id)
        if index is not None:
            return index
    return None


def _session_event(event, index: CheckoutIndex) -> str:
    session = event.data.object
    if event.type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if session.payment_status not in ("paid", "no_payment_required"):
            return "awaiting_payment"
        done = purchase_fulfil(purchase_id=index.purchase_id, payment_intent_id=payment_intent_id_of(session))
        return "fulfilled" if done else "already_applied"
    done = purchase_expire(purchase_id=index.purchase_id)
    return "expired" if done else "already_applied"


def _refund_event(event, index: CheckoutIndex) -> str:
    charge = event.data.object
    purchase = Purchase.objects.filter(pk=index.purchase_id).first()
    if purchase is not None and purchase.status == PurchaseStatus.PENDING:
        purchase_reconcile(purchase=purchase)
    done = purchase_refund(
        purchase_id=index.purchase_id,
        amount_refunded=int(charge.amount_refunded),
        amount=int(charge.amount),
        fully_refunded=bool(charge.refunded),
    )
    return "refunded" if done else "not_refundable"


SESSION_EVENTS = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.expired",
    "checkout.session.async_payment_failed",
}


def _apply(event) -> tuple[str, Organisation | None]:
    if event.type in SESSION_EVENTS:
        session = event.data.object
        index = _index_for_session(session.id) or _index_from_metadata(session)
        handler = _session_event
    elif event.type == "charge.refunded":
        index = _index_for_payment(payment_intent_id_of(event.data.object))
        handler = _refund_event
    else:
        return "ignored", None
    if index is None:
        log.warning("stripe.unknown_session", event_id=event.id, type=event.type)
        return "unknown_session", None
    org = Organisation.objects.get(pk=index.organisation_id)
    with tenant_context(org):
        return handler(event, index), org
