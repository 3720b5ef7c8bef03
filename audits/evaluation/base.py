"""What an evaluator is, what it answers and how it fails: the values every part of batch
evaluation shares. No Django, no network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from jobs.providers.base import PermanentProviderError, ProviderError, TransientProviderError

DEFAULT_CATEGORIES = (
    "offensive",
    "political",
    "profanity",
    "personal_information",
    "unprofessional",
    "other",
)
OTHER = "other"
MAX_REASON_CHARS = 500
# Shown on an item whose answer stayed unreadable after the retries and the splits.
UNREADABLE_ANSWER = "The provider's answer for this item could not be read."


@dataclass(frozen=True)
class EvaluationItem:
    id: str
    text: str


@dataclass(frozen=True)
class Criteria:
    text: str
    keywords: tuple[str, ...] = ()
    categories: tuple[str, ...] = DEFAULT_CATEGORIES


@dataclass(frozen=True)
class Verdict:
    item_id: str
    flagged: bool
    reason: str
    categories: tuple[str, ...]  # from the criteria's categories; empty when not flagged
    confidence: float  # 0 to 1


@dataclass(frozen=True)
class ItemFailure:
    item_id: str
    error: str  # shown to the customer: what happened, never the provider's raw answer


@dataclass
class BatchOutcome:
    """What `evaluate_batch` settled: a verdict or a failure for each item of the batch, in
    the batch's order. `retry_items` is empty, except in the `partial` outcome carried by a
    TransientEvaluationError: there it holds the items left unsettled, to evaluate again."""

    verdicts: list[Verdict]
    failures: list[ItemFailure]
    calls: int  # provider calls made, retries and halves included
    split: bool  # the batch was split to isolate an item
    retry_items: list[EvaluationItem] = field(default_factory=list)


class TransientEvaluationError(TransientProviderError):
    """A transient provider error met by `evaluate_batch`. When it came after some items of
    the batch were settled (a split batch), `partial` holds their verdicts and failures and
    the items left to evaluate again; otherwise `partial` is None and nothing was settled."""

    def __init__(self, message: str, *, partial: BatchOutcome | None = None):
        super().__init__(message)
        self.partial = partial


class ThrottledError(TransientEvaluationError):
    """The provider answered 429. `retry_after`: the seconds it asked to wait, when it said."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, partial: BatchOutcome | None = None
    ):
        super().__init__(message, partial=partial)
        self.retry_after = retry_after


class ProviderUnusableError(PermanentProviderError):
    """The provider refuses every request whatever its items (credentials, model, account):
    splitting the batch cannot isolate anything, so its items fail without further calls."""


class MalformedAnswer(Exception):
    """The provider answered, but not with one readable verdict for each item of the batch.
    `evaluate_batch` retries and then splits; it never reaches the customer as such."""


class Evaluator(Protocol):
    name: str
    model: str

    def evaluate(self, items: list[EvaluationItem], criteria: Criteria) -> list[Verdict]:
        """One verdict per item, in the items' order. Raises MalformedAnswer, or a
        ProviderError: ThrottledError and other TransientProviderErrors (worth a later
        attempt), PermanentProviderError (the provider refuses these items),
        ProviderUnusableError (it refuses everything)."""
        ...


__all__ = [
    "DEFAULT_CATEGORIES",
    "MAX_REASON_CHARS",
    "OTHER",
    "UNREADABLE_ANSWER",
    "BatchOutcome",
    "Criteria",
    "EvaluationItem",
    "Evaluator",
    "ItemFailure",
    "MalformedAnswer",
    "PermanentProviderError",
    "ProviderError",
    "ProviderUnusableError",
    "ThrottledError",
    "TransientEvaluationError",
    "TransientProviderError",
    "Verdict",
]
