"""A local paginated JSON API for development and tests: API-key auth, `updated_since`
filtering, pagination, and occasional 429s with Retry-After, so the API connector runs
over real HTTP. Items are deterministic: item i was last updated i minutes after a base
time."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


class MockApi:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "dev-key",
        items: int = 250,
        rate_429: float = 0.0,
        retry_after: str = "1",
        renames: dict[str, str] | None = None,
        renames_from: int = 1,
        seed: int = 7,
        ignore_page: bool = False,
    ):
        self.api_key = api_key
        self.count = items
        self.rate_429 = rate_429
        self.retry_after = retry_after
        self.renames = renames or {}
        # Items numbered from here on carry the renamed fields, older ones the original
        # names: a source that changed its schema part-way through its data.
        self.renames_from = renames_from
        # Simulates a broken API that answers page 1 whatever page is asked for.
        self.ignore_page = ignore_page
        self.random = random.Random(seed)  # noqa: S311  # nosec B311
        self.requests: list[dict] = []
        self.scripted: list[int] = []  # statuses to answer first, one per request
        # A failure part-way through a run: pages from this one on are refused (403, as when
        # a key is revoked) until it is set back to None.
        self.fail_from_page: int | None = None
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/items"

    def item(self, index: int) -> dict:
        record = {
            "id": f"item-{index:05d}",
            "title": f"Item number {index}",
            "content": f"Body of item {index}.",
            "link": f"https://example.com/items/{index}",
            "author": f"Author {index % 7}",
            "updated_at": (BASE_TIME + timedelta(minutes=index)).isoformat(),
            "labels": ["even" if index % 2 == 0 else "odd", f"group-{index % 5}"],
            "score": f"{index * 1000:,}",
        }
        if index < self.renames_from:
            return record
        return {self.renames.get(key, key): value for key, value in record.items()}

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with api.lock:
                    api.requests.append(
                        {
                            "path": parts.path,
                            "query": query,
                            "at": datetime.now(UTC),
                            "api_key": self.headers.get("X-API-Key"),
                        }
                    )
                    scripted = api.scripted.pop(0) if api.scripted else None
                    throttle = api.rate_429 and api.random.random() < api.rate_429
                if parts.path != "/items":
                    return self._send(404, {"error": "not found"})
                if self.headers.get("X-API-Key") != api.api_key:
                    return self._send(401, {"error": "invalid API key"})
                if scripted:
                    headers = {"Retry-After": api.retry_after} if scripted == 429 else {}
                    return self._send(scripted, {"error": f"scripted {scripted}"}, headers)
                if throttle:
                    return self._send(429, {"error": "slow down"}, {"Retry-After": api.retry_after})
                page = 1 if api.ignore_page else max(1, int(query.get("page", 1)))
                if api.fail_from_page is not None and page >= api.fail_from_page:
                    return self._send(403, {"error": "access revoked"})
                per_page = min(100, max(1, int(query.get("per_page", 50))))
                numbers = range(1, api.count + 1)
                since = query.get("updated_since")
                if since:
                    cutoff = datetime.fromisoformat(since)
                    numbers = [i for i in numbers if BASE_TIME + timedelta(minutes=i) >= cutoff]
                items = [api.item(i) for i in numbers]
                chunk = items[(page - 1) * per_page : page * per_page]
                more = page * per_page < len(items)
                return self._send(
                    200,
                    {
                        "data": chunk,
                        "page": page,
                        "per_page": per_page,
                        "total": len(items),
                        "next_page": page + 1 if more else None,
                    },
                )

            def log_message(self, *args):
                pass

        return Handler

    def start(self) -> MockApi:
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> MockApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
