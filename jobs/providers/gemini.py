"""Gemini through the google-genai SDK (google-generativeai is deprecated).

The SDK's own retries are off: a failed call is classified here and the job's retry policy
(jobs.services) decides what happens next.
"""

from __future__ import annotations

import json

import httpx
from django.conf import settings
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from jobs.providers import text_stats
from jobs.providers.base import PermanentProviderError, ProviderResult, TransientProviderError

# What a failed call to Gemini is, for both users of the SDK (these jobs, and audits'
# evaluator): a network error, or an HTTP status worth trying again.
try:  # the SDK may use either HTTP client package
    import httpx2

    NETWORK_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover
    NETWORK_ERRORS = (httpx.TransportError,)

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

SUMMARY_PROMPT = (
    "Summarise the following text in 3 to 5 plain sentences. Answer with the summary only.\n\nText:\n{text}"
)
ANALYSIS_PROMPT = (
    "Analyse the sentiment of the following text and list up to 5 key phrases from it. "
    'Answer in JSON: {{"sentiment": {{"label": "positive"|"neutral"|"negative", '
    '"score": number from -1 to 1}}, "key_phrases": [string]}}.\n\nText:\n{text}'
)
ANALYSIS_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "sentiment": {
            "type": "OBJECT",
            "properties": {
                "label": {"type": "STRING", "enum": ["positive", "neutral", "negative"]},
                "score": {"type": "NUMBER"},
            },
            "required": ["label", "score"],
        },
        "key_phrases": {"type": "ARRAY", "items": {"type": "STRING"}},
    },
    "required": ["sentiment", "key_phrases"],
}


class GeminiProvider:
    name = "gemini"

    def __init__(self) -> None:
        self.model = settings.GEMINI_MODEL
        http_options = types.HttpOptions(
            base_url=settings.GEMINI_BASE_URL or None,
            timeout=int(settings.JOB_PROVIDER_TIMEOUT_SECONDS * 1000),
        )
        self._client = genai.Client(api_key=settings.GEMINI_API_KEY, http_options=http_options)

    def _generate(self, prompt: str, config: types.GenerateContentConfig) -> str:
        try:
            response = self._client.models.generate_content(model=self.model, contents=prompt, config=config)
        except genai_errors.APIError as exc:
            status = exc.code or 0
            if status in TRANSIENT_STATUS or status >= 500:
                raise TransientProviderError(f"Gemini is unavailable right now (HTTP {status}).") from exc
            if status in (401, 403):
                raise PermanentProviderError("Gemini refused our credentials.") from exc
            raise PermanentProviderError(f"Gemini rejected the request (HTTP {status}).") from exc
        except NETWORK_ERRORS as exc:
            kind = "timed out" if "Timeout" in type(exc).__name__ else "could not be reached"
            raise TransientProviderError(f"Gemini {kind}.") from exc

        feedback = getattr(response, "prompt_feedback", None)
        if feedback is not None and getattr(feedback, "block_reason", None):
            raise PermanentProviderError("Gemini declined this text for safety reasons.")
        candidate = (response.candidates or [None])[0]
        finish = str(getattr(candidate, "finish_reason", "") or "")
        if "SAFETY" in finish or "PROHIBITED" in finish or "BLOCKLIST" in finish:
            raise PermanentProviderError("Gemini declined this text for safety reasons.")
        text = response.text
        if not text or not text.strip():
            raise PermanentProviderError("Gemini returned an empty answer.")
        return text.strip()

    def run(self, job_type: str, text: str) -> ProviderResult:
        if job_type == "summarize":
            summary = self._generate(
                SUMMARY_PROMPT.format(text=text), types.GenerateContentConfig(temperature=0.2)
            )
            output = {"summary": summary}
        elif job_type == "analyze":
            raw = self._generate(
                ANALYSIS_PROMPT.format(text=text),
                types.GenerateContentConfig(
                    temperature=0.0,
                    response_mime_type="application/json",
                    response_schema=ANALYSIS_SCHEMA,
                ),
            )
            try:
                parsed = json.loads(raw)
                label = str(parsed["sentiment"]["label"])
                score = max(-1.0, min(1.0, float(parsed["sentiment"]["score"])))
                phrases = [str(p) for p in parsed.get("key_phrases", [])][:5]
            except (ValueError, KeyError, TypeError) as exc:
                raise PermanentProviderError("Gemini returned an analysis we could not read.") from exc
            output = {
                "sentiment": {"label": label, "score": round(score, 3)},
                "key_phrases": phrases,
                "reading_time_seconds": text_stats.reading_time_seconds(text),
                "statistics": text_stats.statistics(text),
            }
        else:
            raise PermanentProviderError(f"Gemini cannot run {job_type!r} jobs.")
        return ProviderResult(output=output, provider=self.name, model=self.model)
