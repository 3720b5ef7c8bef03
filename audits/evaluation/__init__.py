"""Batch evaluation: items judged against an audit's criteria by an AI provider, one call
per batch, with the batch split when one item spoils the answer (docs/specs/audits.md,
"Evaluation"). Providers: Gemini with structured output, or the local lexicon evaluator
when no Gemini key is configured. No Django models here: callers hand items in and commit
what comes back.
"""

from __future__ import annotations

import functools

from django.conf import settings

from audits.evaluation.base import (
    DEFAULT_CATEGORIES,
    UNREADABLE_ANSWER,
    BatchOutcome,
    Criteria,
    EvaluationItem,
    Evaluator,
    ItemFailure,
    MalformedAnswer,
    PermanentProviderError,
    ProviderError,
    ProviderUnusableError,
    ThrottledError,
    TransientEvaluationError,
    TransientProviderError,
    Verdict,
)
from audits.evaluation.batch import CallGuard, evaluate_batch
from audits.evaluation.local import LocalEvaluator
from audits.evaluation.prompt import estimate_tokens

# As for jobs (and decided by the same function): Gemini when a key is configured, else local.
from jobs.providers import default_provider_name

__all__ = [
    "DEFAULT_CATEGORIES",
    "UNREADABLE_ANSWER",
    "BatchOutcome",
    "CallGuard",
    "Criteria",
    "EvaluationItem",
    "Evaluator",
    "ItemFailure",
    "LocalEvaluator",
    "MalformedAnswer",
    "PermanentProviderError",
    "ProviderError",
    "ProviderUnusableError",
    "ThrottledError",
    "TransientEvaluationError",
    "TransientProviderError",
    "UnusableEvaluator",
    "Verdict",
    "default_provider_name",
    "estimate_tokens",
    "evaluate_batch",
    "evaluator_for",
]


def evaluator_for(provider: str, model: str | None = None) -> Evaluator:
    """The evaluator an audit recorded. `model` chooses Gemini's model (default
    GEMINI_MODEL); the local evaluator has one model and ignores it.

    Never raises: a provider that cannot run here (Gemini's key removed since the audit was
    created, a name this code does not know) gets an evaluator that answers every batch
    with ProviderUnusableError, so `evaluate_batch` fails its items with a readable reason
    (and the audit fails after AUDIT_FAIL_AFTER_BATCHES), rather than the task crashing
    and the sweep sending it again for ever."""
    if provider == "gemini":
        if not settings.GEMINI_API_KEY:
            return UnusableEvaluator(provider, model or "", "Gemini is no longer configured on this server.")
        timeout = (
            getattr(settings, "AUDIT_PROVIDER_TIMEOUT_SECONDS", None) or settings.JOB_PROVIDER_TIMEOUT_SECONDS
        )
        return _gemini(
            model or settings.GEMINI_MODEL, settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL, float(timeout)
        )
    if provider == "local":
        return LocalEvaluator()
    return UnusableEvaluator(provider, model or "", f"The provider {provider!r} is not available.")


class UnusableEvaluator:
    def __init__(self, name: str, model: str, message: str):
        self.name, self.model, self.message = name, model, message

    def evaluate(self, items: list[EvaluationItem], criteria: Criteria) -> list[Verdict]:
        raise ProviderUnusableError(self.message)


@functools.lru_cache(maxsize=8)
def _gemini(model: str, api_key: str, base_url: str, timeout_seconds: float) -> Evaluator:
    # One client per configuration and process: building one costs tens of milliseconds
    # (TLS setup), and its connections are kept for the next batches. Keyed by the settings
    # read at each call, so a changed setting gets a client of its own.
    from audits.evaluation.gemini import GeminiEvaluator  # the SDK only when used

    return GeminiEvaluator(model=model, api_key=api_key, base_url=base_url, timeout_seconds=timeout_seconds)
