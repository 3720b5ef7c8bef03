"""A local webhook receiver for developers: verifies Standard Webhooks signatures, prints
each delivery, and can fail the first N requests so retries can be watched."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand, CommandError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Command(BaseCommand):
    help = "Run a local webhook receiver that verifies signatures and prints deliveries."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--secret", required=True, help="The endpoint's whsec_... secret.")
        parser.add_argument(
            "--fail-first", type=int, default=0, help="Answer the first N requests with --status."
        )
        parser.add_argument(
            "--status", type=int, default=500, help="Status for the failed requests (default 500)."
        )

    def handle(self, *args, port, host, secret, fail_first, status, **options):
        try:
            verifier = Webhook(secret)
        except Exception as exc:
            raise CommandError(f"Not a valid webhook secret: {exc}") from exc
        command = self
        lock = threading.Lock()
        state = {"received": 0}

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    state["received"] += 1
                    number = state["received"]
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = verifier.verify(body, headers)
                    verdict = "signature OK"
                except WebhookVerificationError as exc:
                    payload, verdict = None, f"signature INVALID ({exc})"
                answer = status if number <= fail_first else (200 if payload is not None else 400)
                command.stdout.write(
                    f"#{number} {headers.get('webhook-id')} ts={headers.get('webhook-timestamp')} {verdict} "
                    f"-> {answer}"
                )
                if payload is not None:
                    command.stdout.write(json.dumps(payload, indent=2))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer((host, port), Receiver)
        self.stdout.write(f"Listening on http://{host}:{port}/; failing the first {fail_first} ({status}).")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
