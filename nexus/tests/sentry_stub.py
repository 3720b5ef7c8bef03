"""A local stand-in for Sentry's ingest endpoint: the real sentry-sdk sends its envelopes
here (DSN http://key@127.0.0.1:PORT/1), and the test reads the events it received."""

from __future__ import annotations

import gzip
import json
import time
import zlib

from nexus.tests.stub_server import StubRequest, StubServer

PROJECT_ID = "1"


def _decoded(request: StubRequest) -> bytes:
    encoding = request.headers.get("content-encoding", "")
    if encoding == "gzip":
        return gzip.decompress(request.body)
    if encoding == "deflate":
        return zlib.decompress(request.body)
    return request.body


def envelope_items(body: bytes) -> list[tuple[dict, bytes]]:
    """(item header, payload) of each item of an envelope (its first line is the envelope's
    own header). A payload is `length` bytes when the header says so, else one line."""
    _header, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_header_line)
        length = item_header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        items.append((item_header, payload))
    return items


class SentryStub:
    def __init__(self) -> None:
        self.server = StubServer()
        self.server.route("POST", f"/api/{PROJECT_ID}/envelope/", self._receive)
        self.events: list[dict] = []

    def _receive(self, request: StubRequest):
        for header, payload in envelope_items(_decoded(request)):
            if header.get("type") == "event":
                self.events.append(json.loads(payload))
        return 200, {}, {"id": "0"}

    @property
    def dsn(self) -> str:
        return self.server.url.replace("http://", "http://publickey@") + f"/{PROJECT_ID}"

    def events_tagged(self, **tags: str) -> list[dict]:
        return [e for e in self.events if all(e.get("tags", {}).get(k) == v for k, v in tags.items())]

    def wait_for(self, timeout: float = 20.0, **tags: str) -> list[dict]:
        """The events carrying these tags, once at least one has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events_tagged(**tags)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"no Sentry event tagged {tags} after {timeout} s; got {len(self.events)} events"
        )

    def __enter__(self) -> SentryStub:
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
