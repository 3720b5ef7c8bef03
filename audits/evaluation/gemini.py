"""Batch evaluation by Gemini through the google-genai SDK, with structured output: one
call per batch, an answer checked item by item, every failure classified.

As for jobs, the SDK's own retries are off: `evaluate_batch` and the audit's quota decide
what a failed call leads to. Classification: 429 is ThrottledError (with the wait Google
asked for, from the Retry-After header or the RetryInfo of the error's details); other 408
and 5xx, timeouts and connection failures are transient; credentials, a missing model or
an account refusal are ProviderUnusableError (nothing about the items); any other 4xx and
a safety block are permanent for the batch (a split finds the item at fault).
"""

from __future__ import annotations

import email.utils
import re
import time
from datetime import UTC

from django.conf import settings
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from audits.evaluation.base import (
    Criteria,
    EvaluationItem,
    MalformedAnswer,
    PermanentProviderError,
    ProviderUnusableError,
    ThrottledError,
    TransientEvaluationError,
    Verdict,
)
from audits.evaluation.prompt import instructions, items_block, parse_verdicts, response_schema
from jobs.providers.gemini import NETWORK_ERRORS, TRANSIENT_STATUS

_UNUSABLE_STATUS = {401, 403, 404}
# Google answers a bad key with 400 and one of these reasons in the error's details.
_UNUSABLE_REASONS = ("API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED")
_BLOCKED_FINISH = ("SAFETY", "PROHIBITED", "BLOCKLIST", "SPII")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
# The model is asked to classify the items, harsh ones included: the default safety filters
# would block exactly the texts an audit looks for. Blocks that still come are permanent.
_SAFETY_SETTINGS = [
    types.SafetySetting(category=category, threshold=types.HarmBlockThreshold.BLOCK_NONE)
    for category in (
        types.HarmCategory.HARM_CATEGORY_HARASSMENT,
        types.HarmCategory.HARM_CATEGORY_HATE_SPEECH,
        types.HarmCategory.HARM_CATEGORY_SEXUALLY_EXPLICIT,
        types.HarmCategory.HARM_CATEGORY_DANGEROUS_CONTENT,
    )
]


def _parse_retry_after_header(value: str) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the other form HTTP allows: a date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _details_entries(details: object) -> list[dict]:
    body = details[0] if isinstance(details, list) and details else details
    if not isinstance(body, dict):
        return []
    error = body.get("error", body)
    entries = error.get("details") if isinstance(error, dict) else None
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def retry_after_of(exc: genai_errors.APIError) -> float | None:
    """The seconds a 429 asked to wait: the response's Retry-After header when the SDK kept
    the response, else the `retryDelay` ("30s") of the google.rpc.RetryInfo in the error's
    details; None when neither says."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is not None:
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            value = None
        if isinstance(value, str) and (seconds := _parse_retry_after_header(value)) is not None:
            return seconds
    for entry in _details_entries(getattr(exc, "details", None)):
        if str(entry.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = entry.get("retryDelay")
            if isinstance(delay, str) and (match := _DURATION.match(delay)):
                return float(match.group(1))
            if isinstance(delay, dict) and "seconds" in delay:  # the Duration message's own shape
                try:
                    return max(0.0, float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9)
                except (TypeError, ValueError):
                    return None
    return None


def _is_unusable(exc: genai_errors.APIError) -> bool:
    if (exc.code or 0) in _UNUSABLE_STATUS:
        return True
    reasons = (str(entry.get("reason", "")) for entry in _details_entries(getattr(exc, "details", None)))
    return any(reason in _UNUSABLE_REASONS for reason in reasons)


def classify(exc: genai_errors.APIError) -> Exception:
    """The project's error for an error the SDK raised. Messages say what happened without
    the provider's response, which may echo the request."""
    status = exc.code or 0
    if status == 429:
        return ThrottledError(
            "Gemini's quota is exhausted for now (HTTP 429).", retry_after=retry_after_of(exc)
        )
    if status in TRANSIENT_STATUS or status >= 500:
        return TransientEvaluationError(f"Gemini is unavailable right now (HTTP {status}).")
    if _is_unusable(exc):
        if status == 404:
            return ProviderUnusableError("Gemini does not serve this model (HTTP 404).")
        return ProviderUnusableError("Gemini refused our credentials.")
    return PermanentProviderError(f"Gemini rejected the request for this text (HTTP {status}).")


class GeminiEvaluator:
    name = "gemini"

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self.model = model or settings.GEMINI_MODEL
        api_key = api_key if api_key is not None else settings.GEMINI_API_KEY
        if not api_key:
            raise ProviderUnusableError("Gemini is not configured on this server.")
        if base_url is None:
            base_url = settings.GEMINI_BASE_URL
        if timeout_seconds is None:
            timeout_seconds = getattr(settings, "AUDIT_PROVIDER_TIMEOUT_SECONDS", None) or (
                settings.JOB_PROVIDER_TIMEOUT_SECONDS
            )
        http_options = types.HttpOptions(base_url=base_url or None, timeout=int(timeout_seconds * 1000))
        self._client = genai.Client(api_key=api_key, http_options=http_options)

    def config(self, items: list[EvaluationItem], criteria: Criteria) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            system_instruction=instructions(criteria),
            temperature=0.0,
            response_mime_type="application/json",
            response_schema=types.Schema.model_validate(response_schema(items, criteria)),
            safety_settings=_SAFETY_SETTINGS,
        )

    def evaluate(self, items: list[EvaluationItem], criteria: Criteria) -> list[Verdict]:
        if not items:
            return []
        try:
            response = self._client.models.generate_content(
                model=self.model, contents=items_block(items), config=self.config(items, criteria)
            )
        except genai_errors.APIError as exc:
            raise classify(exc) from exc
        except NETWORK_ERRORS as exc:
            kind = "timed out" if "Timeout" in type(exc).__name__ else "could not be reached"
            raise TransientEvaluationError(f"Gemini {kind}.") from exc

        feedback = getattr(response, "prompt_feedback", None)
        if feedback is not None and getattr(feedback, "block_reason", None):
            raise PermanentProviderError("Gemini declined this text for safety reasons.")
        candidate = (response.candidates or [None])[0]
        finish = str(getattr(candidate, "finish_reason", "") or "")
        if any(reason in finish for reason in _BLOCKED_FINISH):
            raise PermanentProviderError("Gemini declined this text for safety reasons.")
        # An empty or cut answer (MAX_TOKENS) is malformed: a smaller batch may fit.
        text = response.text if candidate is not None else None
        if not text or not text.strip():
            raise MalformedAnswer("the answer is empty")
        return parse_verdicts(text, items, criteria)
