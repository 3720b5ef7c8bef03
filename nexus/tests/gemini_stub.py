"""A local server that speaks Gemini's generateContent REST format, so the google-genai
SDK runs unmodified against it. Behaviour is chosen by a marker in the prompt text:
[rate-limit] 429, [server-error] 500, [bad-request] 400, [auth] 403, [safety] a blocked
prompt, [slow] answers after 2 s, [hang] after 30 s; otherwise a normal answer."""

from __future__ import annotations

import json
import time

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


class GeminiStub(StubServer):
    def __post_init__(self):
        super().__post_init__()
        for version in ("v1", "v1beta"):
            self.route("POST", f"/{version}/models/{MODEL}:generateContent", self._generate)

    def _generate(self, request):
        body = request.json()
        prompt = body["contents"][0]["parts"][0]["text"]
        if request.headers.get("x-goog-api-key") != "test-key":
            return _error(401, "UNAUTHENTICATED", "API key not valid.")
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
        if body.get("generationConfig", {}).get("responseMimeType") == "application/json":
            return _answer(
                json.dumps({"sentiment": {"label": "positive", "score": 0.8}, "key_phrases": ["stub phrase"]})
            )
        return _answer("A stand-in summary.")
