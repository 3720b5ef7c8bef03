"""A local stand-in for the Stripe API calls NexusAPI makes (Checkout Sessions: create,
retrieve, list by payment intent), and signed webhook events made with a test secret.
The real stripe library talks to it through STRIPE_API_BASE."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import parse_qsl

from nexus.tests.stub_server import StubServer

WEBHOOK_SECRET = "whsec_test_stand_in_secret"


def _unflatten(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding (line_items[0][price_data][unit_amount]=1000) back to a dict."""
    result: dict = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


class StripeStub(StubServer):
    def __post_init__(self):
        super().__post_init__()
        self.sessions: dict[str, dict] = {}
        self.idempotency: dict[str, str] = {}
        self.failures: list[int] = []  # statuses to answer before behaving normally
        self.route("POST", "/v1/checkout/sessions", self._create)
        self.route("GET", "/v1/checkout/sessions", self._list)
        self.route_prefix("GET", "/v1/checkout/sessions/", self._retrieve)

    def _error(self, status: int):
        kind = "invalid_request_error" if status < 500 else "api_error"
        return (
            status,
            {"Stripe-Should-Retry": "true" if status >= 500 else "false"},
            {"error": {"type": kind, "message": f"Stand-in error {status}"}},
        )

    def _create(self, request):
        if self.failures:
            return self._error(self.failures.pop(0))
        key = request.headers.get("idempotency-key")
        if key and key in self.idempotency:
            return 200, {}, self.sessions[self.idempotency[key]]
        params = _unflatten(parse_qsl(request.body.decode()))
        session_id = f"cs_test_{uuid.uuid4().hex}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": params["mode"],
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata", {}),
            "amount_total": int(params["line_items"]["0"]["price_data"]["unit_amount"]),
            "currency": params["line_items"]["0"]["price_data"]["currency"],
            "success_url": params.get("success_url"),
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "params": params,
        }
        self.sessions[session_id] = session
        if key:
            self.idempotency[key] = session_id
        return 200, {}, session

    def _retrieve(self, request):
        session = self.sessions.get(request.path.rsplit("/", 1)[-1])
        if session is None:
            return 404, {}, {"error": {"type": "invalid_request_error", "message": "No such session"}}
        return 200, {}, session

    def _list(self, request):
        intent = request.query.get("payment_intent", [None])[0]
        data = [s for s in self.sessions.values() if intent is None or s["payment_intent"] == intent]
        return 200, {}, {"object": "list", "data": data, "has_more": False, "url": "/v1/checkout/sessions"}

    # --- what happens at Stripe ---------------------------------------------------------------

    def pay(self, session_id: str) -> dict:
        session = self.sessions[session_id]
        session.update(status="complete", payment_status="paid", payment_intent=f"pi_{uuid.uuid4().hex[:20]}")
        return session

    def expire(self, session_id: str) -> dict:
        self.sessions[session_id].update(status="expired")
        return self.sessions[session_id]

    def charge(self, session_id: str, *, refunded_cents: int) -> dict:
        session = self.sessions[session_id]
        return {
            "id": f"ch_{uuid.uuid4().hex[:20]}",
            "object": "charge",
            "amount": session["amount_total"],
            "amount_refunded": refunded_cents,
            "refunded": refunded_cents >= session["amount_total"],
            "payment_intent": session["payment_intent"],
        }


def event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "api_version": "2025-01-27.acacia",
        "livemode": False,
        "data": {"object": obj},
    }


def signed(payload: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, str]:
    """The body and Stripe-Signature header Stripe would send."""
    body = json.dumps(payload).encode()
    timestamp = timestamp or int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={signature}"
