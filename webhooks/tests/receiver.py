"""A local webhook receiver for tests: records every request and answers with a scripted
sequence of status codes (the last one repeats)."""

from __future__ import annotations

import time

from nexus.tests.stub_server import StubServer


class Receiver(StubServer):
    def __post_init__(self):
        super().__post_init__()
        self.statuses: list[int] = [200]
        self.delay = 0.0
        self.extra_headers: dict[str, str] = {}
        self.body = "ok"
        self.route("POST", "/hook", self._hook)

    def answer(
        self, *statuses: int, delay: float = 0.0, body: str = "ok", headers: dict | None = None
    ) -> None:
        self.statuses = list(statuses)
        self.delay = delay
        self.body = body
        self.extra_headers = headers or {}

    def _hook(self, request):
        if self.delay:
            time.sleep(self.delay)
        index = min(len(self.requests) - 1, len(self.statuses) - 1)
        return self.statuses[index], self.extra_headers, self.body

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"
