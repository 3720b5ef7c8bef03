"""A local server that speaks Gemini's generateContent REST format, so the google-genai
SDK runs unmodified against it. Behaviour is chosen by a marker in the prompt text:
[rate-limit] 429, [server-error] 500, [bad-request] 400, [auth] 403, [safety] a blocked
prompt, [slow] answers after 2 s, [hang] after 30 s; otherwise a normal answer.

Audit batches (a prompt holding the items between the lines BEGIN_ITEMS and END_ITEMS, as
audits.evaluation writes them) get structured verdicts for exactly the ids found there. The
markers above work per item too (an item with [bad-request] or [safety] makes its whole
batch refused), and these choose an item's verdict or spoil the batch's answer:
[flag] flagged (category "other"), [flag:a,b] flagged with categories a and b,
[confidence=x] that confidence, [long-reason] a 2,000-character reason with spaces around;
[malformed] (or [malformed:not-json]) an answer that is not JSON, [malformed:missing] the
item left out, [malformed:extra] an unknown id added, [malformed:duplicate] the item twice,
[malformed:shape] an object instead of an array, [malformed:once] not JSON the first time
the item is seen only; [truncated] half an answer with finishReason MAX_TOKENS,
[safety-answer] finishReason SAFETY and no text. Set on the instance (and undone by
`reset_audits()`): `throttle_audits(n, ...)` the next n audit requests get 429 with
Retry-After (header and/or Google's RetryInfo), `limit_audit_rate(n, window_seconds)`
429 beyond n audit requests per sliding window, `audit_latency` seconds before answering.
`audit_requests` records each audit request's ids and status."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from nexus.tests.stub_server import StubServer

MODEL = "gemini-2.5-flash"


def _error(status: int, state: str, message: str):
    return status, {}, {"error": {"code": status, "message": message, "status": state}}


def _answer(text: str, finish: str = "STOP"):
    return (
        200,
        {},
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish, "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": MODEL,
        },
    )


_AUDIT_ITEMS = re.compile(r"^BEGIN_ITEMS\n(.*)\nEND_ITEMS$", re.MULTILINE | re.DOTALL)
_FLAG = re.compile(r"\[flag(?::([\w,]+))?\]")
_CONFIDENCE = re.compile(r"\[confidence=(-?[0-9.]+)\]")
_MALFORMED = re.compile(r"\[malformed(?::([a-z-]+))?\]")


def _throttled(retry_after: float, *, header: bool, details: bool):
    headers = {"Retry-After": str(math.ceil(retry_after))} if header else {}
    error = {
        "code": 429,
        "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
    }
    if details:
        delay = f"{retry_after:.0f}s" if retry_after == int(retry_after) else f"{retry_after:.3f}s"
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests"}
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
        ]
    return 429, headers, {"error": error}


@dataclass(frozen=True)
class AuditRequest:
    ids: list[str]
    status: int


class GeminiStub(StubServer):
    def __post_init__(self):
        super().__post_init__()
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold every answer back by about 40 ms.
        self._server.RequestHandlerClass.disable_nagle_algorithm = True
        for version in ("v1", "v1beta"):
            self.route("POST", f"/{version}/models/{MODEL}:generateContent", self._generate)
        self._audit_lock = threading.Lock()
        self.reset_audits()

    # --- audit batches ---------------------------------------------------------------------

    def reset_audits(self) -> None:
        with self._audit_lock:
            self.audit_latency = 0.0
            self.audit_requests: list[AuditRequest] = []
            self._throttle_left = 0
            self._throttle = (1.0, True, True)
            self._rate_limit: tuple[int, float] | None = None
            self._accepted: deque[float] = deque()
            self._seen_once: set[str] = set()

    def throttle_audits(
        self, count: int, *, retry_after: float = 1.0, header: bool = True, details: bool = True
    ) -> None:
        """The next `count` audit requests get 429 asking to wait `retry_after` seconds, in the
        Retry-After header (whole seconds, rounded up), in Google's RetryInfo, or both."""
        with self._audit_lock:
            self._throttle_left = count
            self._throttle = (retry_after, header, details)

    def limit_audit_rate(self, requests: int | None, *, window_seconds: float = 60.0) -> None:
        """429 (with the wait until a slot frees) beyond `requests` audit requests answered in
        any `window_seconds`; None lifts the limit."""
        with self._audit_lock:
            self._rate_limit = None if requests is None else (requests, window_seconds)
            self._accepted.clear()

    def audit_ids(self, status: int | None = 200) -> list[list[str]]:
        """The ids of each audit request answered with `status` (None: all), in order."""
        return [r.ids for r in self.audit_requests if status is None or r.status == status]

    def _record(self, ids: list[str], answer):
        with self._audit_lock:
            self.audit_requests.append(AuditRequest(ids=ids, status=answer[0]))
        return answer

    def _audit_gate(self):
        with self._audit_lock:
            if self._throttle_left > 0:
                self._throttle_left -= 1
                retry_after, header, details = self._throttle
                return _throttled(retry_after, header=header, details=details)
            if self._rate_limit is not None:
                limit, window = self._rate_limit
                now = time.monotonic()
                while self._accepted and self._accepted[0] <= now - window:
                    self._accepted.popleft()
                if len(self._accepted) >= limit:
                    wait = max(0.001, self._accepted[0] + window - now)
                    return _throttled(round(wait, 3), header=True, details=True)
                self._accepted.append(now)
        return None

    def _audit_answer(self, items: list[dict]):
        verdicts = []
        for item in items:
            text = item["text"]
            flag = _FLAG.search(text)
            confidence = _CONFIDENCE.search(text)
            verdict = {
                "id": item["id"],
                "flagged": flag is not None,
                "reason": " " + "r" * 2000 + " " if "[long-reason]" in text else "A stand-in verdict.",
                "categories": (flag.group(1) or "other").split(",") if flag else [],
                "confidence": float(confidence.group(1)) if confidence else 0.9,
            }
            verdicts.append(verdict)
            mode = _MALFORMED.search(text)
            if mode is None:
                continue
            kind = mode.group(1) or "not-json"
            if kind == "once":
                with self._audit_lock:
                    first = item["id"] not in self._seen_once
                    self._seen_once.add(item["id"])
                kind = "not-json" if first else ""
            if kind == "not-json":
                return _answer("Here are the verdicts: [{")
            if kind == "missing":
                verdicts.pop()
            elif kind == "extra":
                verdicts.append({**verdict, "id": f"{item['id']}-unknown"})
            elif kind == "duplicate":
                verdicts.append(verdict)
            elif kind == "shape":
                return _answer(json.dumps({"verdicts": verdicts}))
        texts = " ".join(item["text"] for item in items)
        if "[safety-answer]" in texts:
            return 200, {}, {"candidates": [{"finishReason": "SAFETY", "index": 0}], "modelVersion": MODEL}
        answer = json.dumps(verdicts, ensure_ascii=False)
        if "[truncated]" in texts:
            return _answer(answer[: len(answer) // 2], finish="MAX_TOKENS")
        return _answer(answer)

    # --- every request ---------------------------------------------------------------------

    def _generate(self, request):
        body = request.json()
        prompt = body["contents"][0]["parts"][0]["text"]
        if request.headers.get("x-goog-api-key") != "test-key":
            return _error(401, "UNAUTHENTICATED", "API key not valid.")
        block = _AUDIT_ITEMS.search(prompt)
        if block is not None:
            items = json.loads(block.group(1))
            return self._record([item["id"] for item in items], self._audit(prompt, items))
        return self._markers(prompt, body)

    def _audit(self, prompt: str, items: list[dict]):
        throttled = self._audit_gate()
        if throttled is not None:
            return throttled
        if self.audit_latency:
            time.sleep(self.audit_latency)
        refused = self._markers(prompt, None)
        return refused if refused is not None else self._audit_answer(items)

    def _markers(self, prompt: str, body):
        """The answer the prompt's markers choose; for an audit batch (`body` None), None
        when no marker applies."""
        if "[rate-limit]" in prompt:
            return _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.")
        if "[server-error]" in prompt:
            return _error(500, "INTERNAL", "Internal error.")
        if "[bad-request]" in prompt:
            return _error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        if "[auth]" in prompt:
            return _error(403, "PERMISSION_DENIED", "Permission denied.")
        if "[safety]" in prompt:
            return 200, {}, {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": MODEL}
        if "[hang]" in prompt:
            time.sleep(30)
        if "[slow]" in prompt:
            time.sleep(2)
        if body is None:
            return None
        if body.get("generationConfig", {}).get("responseMimeType") == "application/json":
            return _answer(
                json.dumps({"sentiment": {"label": "positive", "score": 0.8}, "key_phrases": ["stub phrase"]})
            )
        return _answer("A stand-in summary.")
