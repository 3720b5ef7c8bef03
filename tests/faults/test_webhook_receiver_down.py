"""A webhook receiver that refuses connections for its first three attempts and is back
before the fourth: every event arrives exactly once, signed, after the 5/25/125 s schedule
(the production delays, really waited), and the endpoint's health says so afterwards."""

import itertools
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django_tenants.utils import tenant_context
from standardwebhooks.webhooks import Webhook

from nexus.tests.live import free_port
from tests.faults.conftest import TEXT, wait_for
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery

EVENTS = 5
DELAYS = [5, 25, 125]


class Receiver:
    """Listens on `port` only once started: before that, connections are refused."""

    def __init__(self, port: int):
        self.port = port
        self.received: list[tuple[float, dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((time.monotonic(), dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.handler = Handler
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def test_webhook_receiver_down_then_up(system, live_org, report):
    assert system.extra_env["WEBHOOK_RETRY_DELAYS"] == ",".join(map(str, DELAYS))
    live_org.grant(1000)
    api = system.api(live_org.admin)
    receiver = Receiver(free_port())
    created = api.call(
        "POST",
        "/api/v1/webhooks",
        {"url": f"http://127.0.0.1:{receiver.port}/hook", "event_types": ["job.completed"]},
    )
    assert created.status == 201, created.body
    endpoint_id, secret = created.body["data"]["id"], created.body["data"]["secret"]

    began = time.monotonic()
    for n in range(EVENTS):
        assert api.summarize(f"{TEXT} {n} {uuid.uuid4().hex}").status == 202

    def third_attempts_failed():
        with tenant_context(live_org):
            return WebhookAttempt.objects.filter(number=3, succeeded=False).count() == EVENTS

    wait_for(third_attempts_failed, timeout=90, every=0.5, what="three failed attempts per event")
    receiver.start()  # back, ~95 s before the fourth attempts are due
    try:

        def delivered():
            with tenant_context(live_org):
                return WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == EVENTS

        wait_for(delivered, timeout=200, every=0.5, what="every event delivered")
        time.sleep(3)  # anything sent twice would arrive now
    finally:
        receiver.stop()

    ids = [headers["webhook-id"] for _, headers, _ in receiver.received]
    assert len(ids) == EVENTS and len(set(ids)) == EVENTS, ids
    for _, headers, body in receiver.received:
        payload = Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
        assert payload["type"] == "job.completed"
        assert json.loads(body)["data"]["status"] == "completed"

    gaps_seen = []
    with tenant_context(live_org):
        deliveries = list(WebhookDelivery.objects.all())
        assert sorted(d.pk for d in deliveries) == sorted(ids)
        for delivery in deliveries:
            attempts = list(delivery.attempts.order_by("number"))
            assert [a.succeeded for a in attempts] == [False, False, False, True]
            assert all(a.error.startswith("Could not connect") for a in attempts[:3])
            gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(attempts)]
            gaps_seen.append(gaps)
            for gap, delay in zip(gaps, DELAYS, strict=True):
                assert delay <= gap <= delay + 3, gaps
    health = api.call("GET", f"/api/v1/webhooks/{endpoint_id}").body["data"]["health"]
    assert health["status"] == "healthy" and health["failing_since"] is None
    report(
        events=EVENTS,
        received=len(ids),
        duplicates=len(ids) - len(set(ids)),
        schedule_s=DELAYS,
        worst_gaps_s=[round(max(g[i] for g in gaps_seen), 1) for i in range(3)],
        arrivals_within_s=round(
            max(t for t, _, _ in receiver.received) - min(t for t, _, _ in receiver.received), 1
        ),
        total_s=round(time.monotonic() - began, 1),
    )
