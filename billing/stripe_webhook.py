"""POST /stripe/webhook: Stripe's signed events. The view checks the signature and hands
the event to billing.services.stripe_events, which applies it exactly once; a failure
answers 500 so that Stripe sends the event again."""

from __future__ import annotations

import stripe
import structlog
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.services.stripe_events import stripe_event_receive

log = structlog.get_logger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request):
    if not settings.STRIPE_WEBHOOK_SECRET:
        return JsonResponse({"error": "Billing is not configured."}, status=503)
    try:
        event = stripe.Webhook.construct_event(
            request.body,
            request.headers.get("Stripe-Signature"),
            settings.STRIPE_WEBHOOK_SECRET,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
    except (ValueError, stripe.SignatureVerificationError):
        log.warning("stripe.bad_signature")
        return JsonResponse({"error": "Invalid payload or signature."}, status=400)
    try:
        received = stripe_event_receive(event=event)
    except Exception:
        log.exception("stripe.event_failed", event_id=event.id, type=event.type)
        return JsonResponse({"error": "The event could not be applied; it will be retried."}, status=500)
    if received.duplicate:
        return JsonResponse({"received": True, "duplicate": True})
    return JsonResponse({"received": True, "outcome": received.outcome})
