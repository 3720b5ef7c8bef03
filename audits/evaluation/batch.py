"""One batch through an evaluator, so that one bad item fails alone: an unreadable answer is
asked again, then the batch is split in halves, recursively; so is a batch the provider
refuses for its content. Every item ends with a verdict or a failure the customer can read,
unless the provider is throttling or unavailable: then the caller backs off and re-queues.

Throttled and transient errors: when nothing was settled yet, the error is raised as it came
(a TransientProviderError; a ThrottledError for a 429). When it comes after part of the
batch was settled (between the calls of a split batch), no further call is made and a
TransientEvaluationError (a ThrottledError for a 429) is raised whose `partial` holds the
verdicts and failures obtained and, in `retry_items`, the items left to evaluate again. A
caller that ignores `partial` loses only work (those items are evaluated again later);
one that commits it must put `retry_items` back to pending.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import structlog

from audits.evaluation.base import (
    UNREADABLE_ANSWER,
    BatchOutcome,
    Criteria,
    EvaluationItem,
    Evaluator,
    ItemFailure,
    MalformedAnswer,
    PermanentProviderError,
    ProviderUnusableError,
    TransientEvaluationError,
    TransientProviderError,
    Verdict,
)

log = structlog.get_logger(__name__)

CallGuard = Callable[[list[EvaluationItem]], AbstractContextManager[object]]


def _checked(verdicts: list[Verdict], items: list[EvaluationItem]) -> list[Verdict]:
    # An evaluator promises one verdict per item, in order; one that breaks the promise has
    # answered something unreadable.
    if [verdict.item_id for verdict in verdicts] != [item.id for item in items]:
        raise MalformedAnswer("the verdicts do not match the items")
    return verdicts


def evaluate_batch(
    evaluator: Evaluator,
    items: list[EvaluationItem],
    criteria: Criteria,
    *,
    max_retries_malformed: int = 1,
    call_guard: CallGuard | None = None,
) -> BatchOutcome:
    """Verdicts and failures for every item, in the items' order.

    - A malformed answer is asked again up to `max_retries_malformed` times; still
      malformed, the batch is split in halves, each evaluated the same way; a single item
      still unreadable fails with UNREADABLE_ANSWER.
    - A PermanentProviderError splits a batch of several items (isolating the item the
      provider refuses) and fails a single item with the error's message.
    - A ProviderUnusableError (credentials, model) fails every item not yet settled with
      its message, without another call: no split can help.
    - ThrottledError and other TransientProviderErrors: see the module's docstring.

    `call_guard(items)`, when given, wraps every provider call (retries and halves too), so
    that each one passes the caller's quota: it may sleep, and it may raise a
    TransientProviderError to stop (handled as the provider's own; `partial` is kept). It
    sees the call's exception on its way out: ThrottledError (a 429), another provider
    error, MalformedAnswer (the provider answered), or none.
    """
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("the items of a batch need distinct ids")
    outcome = BatchOutcome(verdicts=[], failures=[], calls=0, split=False)
    if not items:
        return outcome
    guard = call_guard or (lambda _batch: contextlib.nullcontext())
    settled: dict[str, Verdict | ItemFailure] = {}
    # Depth first, left half first: results come back in the items' order.
    stack: list[list[EvaluationItem]] = [list(items)]

    def split(batch: list[EvaluationItem], why: str) -> None:
        outcome.split = True
        middle = len(batch) // 2
        stack.extend([batch[middle:], batch[:middle]])
        log.info("audit.batch_split", size=len(batch), reason=why)

    while stack:
        batch = stack.pop()
        try:
            verdicts = _call_with_retries(evaluator, batch, criteria, outcome, max_retries_malformed, guard)
        except MalformedAnswer:
            if len(batch) > 1:
                split(batch, "malformed")
            else:
                settled[batch[0].id] = ItemFailure(item_id=batch[0].id, error=UNREADABLE_ANSWER)
            continue
        except ProviderUnusableError as exc:
            for item in [*batch, *(item for rest in reversed(stack) for item in rest)]:
                settled[item.id] = ItemFailure(item_id=item.id, error=exc.message)
            stack.clear()
            continue
        except PermanentProviderError as exc:
            if len(batch) > 1:
                split(batch, "refused")
            else:
                settled[batch[0].id] = ItemFailure(item_id=batch[0].id, error=exc.message)
            continue
        except TransientProviderError as exc:
            if not settled:
                raise
            retry = [*batch, *(item for rest in reversed(stack) for item in rest)]
            partial = _ordered(items, settled, outcome)
            partial.retry_items = retry
            if isinstance(exc, TransientEvaluationError):
                exc.partial = partial
                raise
            raise TransientEvaluationError(exc.message, partial=partial) from exc
        for verdict in verdicts:
            settled[verdict.item_id] = verdict
    return _ordered(items, settled, outcome)


def _call_with_retries(
    evaluator: Evaluator,
    batch: list[EvaluationItem],
    criteria: Criteria,
    outcome: BatchOutcome,
    max_retries_malformed: int,
    guard: CallGuard,
) -> list[Verdict]:
    attempt = 0
    while True:
        try:
            with guard(batch):
                outcome.calls += 1
                return _checked(evaluator.evaluate(batch, criteria), batch)
        except MalformedAnswer as exc:
            if attempt >= max_retries_malformed:
                raise
            attempt += 1
            log.info("audit.answer_malformed", size=len(batch), problem=str(exc), attempt=attempt)


def _ordered(
    items: list[EvaluationItem], settled: dict[str, Verdict | ItemFailure], outcome: BatchOutcome
) -> BatchOutcome:
    verdicts = [result for item in items if isinstance(result := settled.get(item.id), Verdict)]
    failures = [result for item in items if isinstance(result := settled.get(item.id), ItemFailure)]
    return BatchOutcome(verdicts=verdicts, failures=failures, calls=outcome.calls, split=outcome.split)
