"""A small local HTTP server for tests that speak to outside services (Google, Gemini,
Stripe, webhook receivers). The real client library makes real HTTP requests; only the
far end is ours. Routes are (method, path) -> handler(request) -> (status, headers, body)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class StubRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}


Handler = Callable[[StubRequest], tuple[int, dict[str, str], bytes | str | dict | list]]


@dataclass
class StubServer:
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    prefix_routes: list[tuple[str, str, Handler]] = field(default_factory=list)
    requests: list[StubRequest] = field(default_factory=list)

    def __post_init__(self):
        stub = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = StubRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                stub.requests.append(request)
                handler = stub.routes.get((self.command, parts.path)) or next(
                    (h for m, p, h in stub.prefix_routes if m == self.command and parts.path.startswith(p)),
                    None,
                )
                if handler is None:
                    status, headers, body = 404, {}, {"error": "no stub route"}
                else:
                    status, headers, body = handler(request)
                if isinstance(body, (dict, list)):
                    body = json.dumps(body)
                    headers = {"Content-Type": "application/json", **headers}
                if isinstance(body, str):
                    body = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        class _Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # A client that hangs up early (a timeout under test) is expected, not news.
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the next poll, and tests stop many servers.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def route_prefix(self, method: str, prefix: str, handler: Handler) -> None:
        """For paths with ids in them (/v1/checkout/sessions/cs_123); exact routes win."""
        self.prefix_routes.append((method, prefix, handler))

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
