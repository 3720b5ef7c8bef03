"""Batch audits: created with all their items and the credits reserved for them, then
evaluated batch by batch on the `audits` queue (docs/specs/audits.md).

The rule everything here keeps: an item's verdict, the audit's counters and the charge for
the batch commit in one transaction, the one that claimed the items (`FOR UPDATE SKIP
LOCKED`). A worker killed at any point rolls its claim back: the items are pending again
and nothing was charged, so no item is evaluated twice and none is skipped. The audit row
is locked while a batch commits, so counters add up and exactly one transaction sees the
last pending item go: that one finishes the audit and releases what was not charged (the
sweep finishes any audit such a race left open). The transaction that moves an audit to
completed or failed also writes its webhook event (audit.completed, audit.failed), and what
a transaction counts in the metrics is counted when it commits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import timedelta
from math import ceil

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from auditlog.context import actor_on_behalf_of
from auditlog.services import audit_record
from audits import quota
from audits.evaluation import (
    DEFAULT_CATEGORIES,
    Criteria,
    EvaluationItem,
    MalformedAnswer,
    ThrottledError,
    TransientEvaluationError,
    TransientProviderError,
    default_provider_name,
    estimate_tokens,
    evaluate_batch,
    evaluator_for,
)
from audits.inputs import InputItem
from audits.metrics import BATCHES, ITEMS, PROVIDER_THROTTLED, QUOTA_WAIT
from audits.models import FINISHED_STATUSES, Audit, AuditItem, AuditStatus, ItemStatus
from billing.services import (
    InsufficientCredits,
    credits_charge_reserved,
    credits_release,
    credits_reserve,
)
from nexus.api.errors import Conflict, field_error
from nexus.celery import send_on_commit
from nexus.pgcopy import copy_field
from webhooks.services import webhook_publish

log = structlog.get_logger(__name__)

RUN_BATCH_TASK = "audits.run_batch"
MAX_CRITERIA_CHARS = 2000
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 100
MAX_CATEGORIES = 20
RATE_WINDOW_BATCHES = 20
# Without a batch for this long, an audit with pending items is re-sent by the sweep.
STALLED_AFTER = timedelta(minutes=2)
ITEM_COLUMNS = (
    "audit_id",
    "seq",
    "external_id",
    "text",
    "url",
    "created_at_source",
    "is_retweet",
    "is_reply",
    "truncated",
    "status",
    "categories",
    "reason",
    "error",
)


# --- Creating ---------------------------------------------------------------------------------


def _clean_words(values: Iterable[str], *, field: str, most: int, longest: int) -> list[str]:
    words = []
    for value in values:
        word = " ".join(str(value).split())
        if not word:
            continue
        if len(word) > longest:
            raise field_error(field, f"Each entry is at most {longest} characters.")
        if word.casefold() not in {w.casefold() for w in words}:
            words.append(word)
    if len(words) > most:
        raise field_error(field, f"At most {most} entries.")
    return words


def audit_criteria_check(
    *,
    criteria: str,
    keywords: Iterable[str] = (),
    categories: Iterable[str] = (),
    model: str | None = None,
    batch_size: int | None = None,
) -> dict:
    """The audit's criteria and options, validated (ValidationFailed names the field)."""
    text = (criteria or "").strip()
    if not text:
        raise field_error("criteria", "Describe what should be flagged.")
    if len(text) > MAX_CRITERIA_CHARS:
        raise field_error("criteria", f"At most {MAX_CRITERIA_CHARS} characters.")
    chosen_model = model or settings.AUDIT_MODELS[0]
    if chosen_model not in settings.AUDIT_MODELS:
        raise field_error("model", f"Choose one of: {', '.join(settings.AUDIT_MODELS)}.")
    size = batch_size or settings.AUDIT_BATCH_SIZE
    if not 1 <= size <= settings.AUDIT_MAX_BATCH_SIZE:
        raise field_error("batch_size", f"Between 1 and {settings.AUDIT_MAX_BATCH_SIZE}.")
    return {
        "criteria": text,
        "keywords": _clean_words(keywords, field="keywords", most=MAX_KEYWORDS, longest=MAX_KEYWORD_CHARS),
        "categories": _clean_words(
            categories, field="categories", most=MAX_CATEGORIES, longest=MAX_KEYWORD_CHARS
        )
        or list(DEFAULT_CATEGORIES),
        "model": chosen_model,
        "batch_size": size,
    }


def _copy_items(audit: Audit, items: Iterable[InputItem]) -> int:
    """Write the items with COPY, in chunks, as they are parsed; returns how many."""
    count = 0
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw_cursor.copy(f"COPY audits_audititem ({', '.join(ITEM_COLUMNS)}) FROM STDIN") as copy:
            lines: list[str] = []
            for count, item in enumerate(items, start=1):
                row = (
                    audit.pk, count, item.external_id, item.text, item.url, item.created_at,
                    item.is_retweet, item.is_reply, item.truncated, ItemStatus.PENDING, "[]", "", "",
                )  # fmt: skip
                lines.append("\t".join(copy_field(value) for value in row) + "\n")
                if len(lines) >= 1000:
                    copy.write("".join(lines))
                    lines = []
            if lines:
                copy.write("".join(lines))
    return count


def audit_create(
    *,
    user,
    input_kind: str,
    input_name: str,
    items: Iterable[InputItem],
    options: dict,
    skipped_input: int | None = None,
) -> Audit:
    """Create the audit with all its items and reserve their credits, in one transaction:
    an input error (audits.inputs.InputError), an empty input or a short balance (402)
    leaves nothing behind. The first batches are queued when it commits. `options` is
    audit_criteria_check's answer. `skipped_input`: read from `items` once consumed when
    it is an audits.inputs.ItemStream, unless given."""
    price = settings.AUDIT_PRICE_PER_ITEM
    actor = actor_on_behalf_of(user)
    actor_label = actor.label
    with transaction.atomic():
        audit = Audit.objects.create(
            input_kind=input_kind,
            input_name=input_name[:255],
            provider=default_provider_name(),
            price_per_item=price,
            total=0,
            created_by=user,
            actor_label=actor_label,
            last_batch_at=timezone.now(),
            **options,
        )
        count = _copy_items(audit, items)
        if count == 0:
            raise field_error("file", "The input holds no items to evaluate.")
        skipped = skipped_input if skipped_input is not None else getattr(items, "skipped", 0)
        reserved = count * price
        try:
            credits_reserve(audit_id=audit.pk, amount=reserved, actor_label=actor_label, actor_id=actor.uuid)
        except InsufficientCredits as exc:  # the 402 says what the amount is made of
            exc.details.update(price_per_item=price, items=count)
            raise
        Audit.objects.filter(pk=audit.pk).update(
            total=count, credits_reserved=reserved, skipped_input=skipped
        )
        audit_record(
            action="audit.started",
            target_type="audit",
            target_id=audit.pk,
            target_label=input_name[:255],
            facts={"items": count, "credits_reserved": reserved, "input_kind": input_kind},
            actor=actor,
        )
        for _ in range(_messages_for(count, audit.batch_size)):
            send_on_commit(RUN_BATCH_TASK, str(audit.pk), log_event="audit.enqueue_failed")
    audit.refresh_from_db()
    log.info("audit.created", audit_id=str(audit.pk), items=count, reserved=reserved, kind=input_kind)
    return audit


def _messages_for(pending: int, batch_size: int) -> int:
    return min(settings.AUDIT_MAX_IN_FLIGHT, ceil(pending / batch_size))


# --- Evaluating -----------------------------------------------------------------------------


def _buckets(audit: Audit) -> quota.TokenBuckets:
    return quota.TokenBuckets(
        quota.quota_name(provider=audit.provider, model=audit.model),
        requests_per_minute=settings.AUDIT_PROVIDER_RPM,
        tokens_per_minute=settings.AUDIT_PROVIDER_TPM,
        # A few seconds' worth at once, not a whole minute's: a provider counting per sliding
        # minute would refuse the second minute's worth sent within the first.
        requests_burst=max(1, ceil(settings.AUDIT_PROVIDER_RPM * settings.AUDIT_PROVIDER_BURST_SECONDS / 60)),
        tokens_burst=max(1, ceil(settings.AUDIT_PROVIDER_TPM * settings.AUDIT_PROVIDER_BURST_SECONDS / 60)),
    )


def _concurrency(audit: Audit) -> quota.AdaptiveConcurrency:
    return quota.AdaptiveConcurrency(
        quota.quota_name(provider=audit.provider, model=audit.model),
        initial=settings.AUDIT_CONCURRENCY_INITIAL,
        maximum=settings.AUDIT_CONCURRENCY_MAX,
        recover_after=settings.AUDIT_CONCURRENCY_RECOVER,
    )


def _lease_seconds() -> float:
    return settings.JOB_PROVIDER_TIMEOUT_SECONDS * 2 + 30


class Requeue(Exception):
    """The batch could not run now (quota, throttling, a transient provider error): its
    claim is rolled back and the message comes back after `delay` seconds."""

    def __init__(self, delay: float, reason: str):
        self.delay = delay
        self.reason = reason
        super().__init__(reason)


class QuotaWait(TransientEvaluationError):
    """The shared quota has no room for the call now: the batch waits `delay` seconds."""

    def __init__(self, delay: float, reason: str):
        super().__init__(f"waiting for the provider quota ({reason})")
        self.delay = delay
        self.reason = reason


def _call_guard(audit: Audit, criteria: Criteria, *, attempt: int):
    """Wraps every provider call of a batch (retries and halves too): a lease on the shared
    concurrency limit, then the request and its estimated tokens from the shared buckets;
    the lease is given back with what the provider said (a 429 halves the limit)."""
    concurrency, buckets = _concurrency(audit), _buckets(audit)
    max_wait = settings.AUDIT_QUOTA_MAX_WAIT_SECONDS

    @contextlib.contextmanager
    def guard(items: list[EvaluationItem]):
        waiting_since = time.monotonic()
        lease = concurrency.acquire(_lease_seconds(), max_wait=max_wait)
        if lease is None:
            QUOTA_WAIT.observe(time.monotonic() - waiting_since)
            raise QuotaWait(quota.backoff_delay(attempt, base=1.0, cap=30.0), "concurrency")
        outcome, retry_after = "error", None
        try:
            admitted = buckets.acquire(estimate_tokens(items, criteria), max_wait=max_wait)
            QUOTA_WAIT.observe(time.monotonic() - waiting_since)
            if not admitted:
                raise QuotaWait(
                    quota.backoff_delay(attempt, base=2.0, cap=60.0), "requests or tokens per minute"
                )
            try:
                yield
            except ThrottledError as exc:
                outcome, retry_after = "throttled", exc.retry_after
                PROVIDER_THROTTLED.inc()  # the 429 happened, whatever the batch's transaction does
                raise
            except MalformedAnswer:
                outcome = "ok"  # the provider answered; the answer was the problem
                raise
            outcome = "ok"
        finally:
            concurrency.release(lease, outcome, retry_after=retry_after)

    return guard


def _delay_for(exc: Exception, attempt: int) -> float:
    if isinstance(exc, QuotaWait):
        return exc.delay
    if isinstance(exc, ThrottledError) and exc.retry_after:
        return exc.retry_after
    return quota.backoff_delay(attempt, base=2.0, cap=120.0)


def audit_run_batch(*, audit_id: str, attempt: int = 0) -> str:
    """One batch of the audit: claim, evaluate, commit. Returns "committed" or "idle"
    (nothing to claim, or the audit is not running); raises Requeue when the batch must
    wait (quota, throttling, a transient provider error) — after committing what was
    settled before the wait, if anything was."""
    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is not None and audit.status in (AuditStatus.CANCELLED, AuditStatus.FAILED):
        _settle_leftovers(audit.pk)  # items a batch put back after the audit ended
    if audit is None or audit.status not in (AuditStatus.QUEUED, AuditStatus.RUNNING):
        return "idle"
    requeue = None
    with structlog.contextvars.bound_contextvars(audit_id=str(audit.pk)), transaction.atomic():
        claimed = list(
            AuditItem.objects.select_for_update(skip_locked=True)
            .filter(audit_id=audit.pk, status=ItemStatus.PENDING)
            .order_by("seq")[: audit.batch_size]
        )
        if not claimed:
            _finish_if_done(audit.pk)
            return "idle"
        criteria = Criteria(
            text=audit.criteria, keywords=tuple(audit.keywords), categories=tuple(audit.categories)
        )
        batch = [EvaluationItem(id=str(item.pk), text=item.text) for item in claimed]
        try:
            outcome = evaluate_batch(
                evaluator_for(audit.provider, audit.model),
                batch,
                criteria,
                call_guard=_call_guard(audit, criteria, attempt=attempt),
            )
        except TransientProviderError as exc:
            reason = exc.reason if isinstance(exc, QuotaWait) else type(exc).__name__
            requeue = Requeue(_delay_for(exc, attempt), reason)
            _log_provider_wait(exc, requeue)
            outcome = getattr(exc, "partial", None)
            if outcome is None or not (outcome.verdicts or outcome.failures):
                BATCHES.labels(outcome="requeued").inc()
                raise requeue from exc  # nothing settled: the claim is rolled back
            log.info("audit.batch_partly_settled", left=len(outcome.retry_items), reason=reason)
        settled = {v.item_id for v in outcome.verdicts} | {f.item_id for f in outcome.failures}
        _commit_batch(audit.pk, [item for item in claimed if str(item.pk) in settled], outcome)
        if requeue is None:
            batch_outcome = "split" if outcome.split else "committed"
            transaction.on_commit(lambda: BATCHES.labels(outcome=batch_outcome).inc())
    if requeue is not None:
        BATCHES.labels(outcome="requeued").inc()  # what was settled has committed
        raise requeue  # the items not settled are pending again
    _continue(audit.pk)
    return "committed"


def _log_provider_wait(exc: TransientProviderError, requeue: Requeue) -> None:
    """The provider's side of a batch that must wait (a wait for the shared quota is ours, and
    only re-queues): a 429, or the provider unreachable or failing for now."""
    if isinstance(exc, QuotaWait):
        return
    if isinstance(exc, ThrottledError):
        log.warning("audit.provider_throttled", retry_after=exc.retry_after, delay_s=round(requeue.delay, 1))
        return
    cause = exc.__cause__ if type(exc) is TransientEvaluationError and exc.__cause__ else exc
    log.warning(
        "audit.provider_unavailable", error_class=type(cause).__name__, delay_s=round(requeue.delay, 1)
    )


def _commit_batch(audit_id, claimed: list[AuditItem], outcome) -> None:
    now = timezone.now()
    by_id = {str(item.pk): item for item in claimed}
    verdicts = {verdict.item_id: verdict for verdict in outcome.verdicts}
    failures = {failure.item_id: failure for failure in outcome.failures}
    evaluated, failed = [], []
    for key, item in by_id.items():
        if key in verdicts:
            verdict = verdicts[key]
            item.status, item.flagged, item.reason = ItemStatus.EVALUATED, verdict.flagged, verdict.reason
            item.categories, item.confidence, item.evaluated_at = (
                list(verdict.categories),
                verdict.confidence,
                now,
            )
            evaluated.append(item)
        else:  # an item the outcome does not name failed, rather than staying claimable forever
            failure = failures.get(key)
            item.status, item.error = (
                ItemStatus.FAILED,
                failure.error if failure else "No verdict was returned.",
            )
            item.evaluated_at = now
            failed.append(item)
    AuditItem.objects.bulk_update(
        evaluated + failed,
        ["status", "flagged", "reason", "categories", "confidence", "error", "evaluated_at"],
    )
    audit = Audit.objects.select_for_update().get(pk=audit_id)
    charge = len(evaluated) * audit.price_per_item
    if charge:
        credits_charge_reserved(
            audit_id=audit.pk,
            amount=charge,
            actor_label=audit.actor_label,
            reference=f"{len(evaluated)} items",
        )
    flagged = sum(1 for item in evaluated if item.flagged)
    audit.done += len(evaluated) + len(failed)
    audit.flagged += flagged
    audit.failed += len(failed)
    audit.credits_charged += charge
    audit.failed_batches_in_row = audit.failed_batches_in_row + 1 if not evaluated else 0
    audit.rate_window = [*audit.rate_window, [now.timestamp(), len(claimed)]][-RATE_WINDOW_BATCHES:]
    audit.last_batch_at = now
    if audit.status == AuditStatus.QUEUED:
        audit.status, audit.started_at = AuditStatus.RUNNING, now
    audit.save()
    _count_items_on_commit(evaluated=len(evaluated), failed=len(failed))
    log.info(
        "audit.batch_committed",
        audit_id=str(audit.pk),
        evaluated=len(evaluated),
        failed=len(failed),
        flagged=flagged,
        split=outcome.split,
        calls=outcome.calls,
    )
    failing = (
        audit.failed_batches_in_row >= settings.AUDIT_FAIL_AFTER_BATCHES
        and audit.status == AuditStatus.RUNNING
    )
    if failing:
        _fail(
            audit,
            "The provider failed every item of the last batches; the remaining items were not evaluated.",
        )
    _finish_if_done(audit.pk)
    if failing:
        # After the release above, so that the event carries it (unless a batch in flight
        # still holds items: that batch's commit releases the rest, and publishes nothing).
        _publish_end(Audit.objects.get(pk=audit.pk))


def _continue(audit_id) -> None:
    """After a committed batch: the next message for the audit, to the back of the queue, so
    audits of different organisations take turns."""
    audit = Audit.objects.filter(pk=audit_id).only("status").first()
    if audit is None or audit.status not in (AuditStatus.QUEUED, AuditStatus.RUNNING):
        return
    if AuditItem.objects.filter(audit_id=audit_id, status=ItemStatus.PENDING).exists():
        send_on_commit(RUN_BATCH_TASK, str(audit_id), log_event="audit.enqueue_failed")


# --- Ending, pausing, cancelling --------------------------------------------------------------


def _release_rest(audit: Audit) -> None:
    rest = audit.credits_reserved - audit.credits_charged - audit.credits_released
    if rest > 0:
        credits_release(
            audit_id=audit.pk, amount=rest, actor_label=audit.actor_label, reason=f"audit {audit.status}"
        )
        audit.credits_released += rest


def _finish_if_done(audit_id) -> bool:
    """Within the caller's transaction: once no item is pending, a running audit completes
    and a failed or cancelled one is settled; either way what was not charged is released.
    Returns whether anything changed."""
    audit = Audit.objects.select_for_update().get(pk=audit_id)
    if AuditItem.objects.filter(audit_id=audit_id, status=ItemStatus.PENDING).exists():
        return False
    changed = completed = False
    if audit.status in (AuditStatus.QUEUED, AuditStatus.RUNNING):
        audit.status, audit.finished_at, changed = AuditStatus.COMPLETED, timezone.now(), True
        completed = True
    elif audit.status not in FINISHED_STATUSES:
        return False  # paused with nothing pending: resuming completes it
    if audit.credits_charged + audit.credits_released != audit.credits_reserved:
        _release_rest(audit)
        changed = True
    if changed:
        audit.save()
        log.info(
            "audit.finished",
            audit_id=str(audit.pk),
            status=audit.status,
            charged=audit.credits_charged,
            released=audit.credits_released,
        )
    if completed:
        _publish_end(audit)
    return changed


# The webhook event of each end an organisation is told about (a cancel is its own doing).
_END_EVENTS = {AuditStatus.COMPLETED: "audit.completed", AuditStatus.FAILED: "audit.failed"}


def _publish_end(audit: Audit) -> None:
    """The audit's end for its organisation's webhooks, written to the outbox in the
    transaction that ends it (sent once that commits; nothing if it rolls back). Called only
    where the status moves to completed or failed, under the audit's row lock, so once per
    audit whoever settles it later (a batch in flight, the sweep)."""
    webhook_publish(event_type=_END_EVENTS[audit.status], subject=audit)


def _count_items_on_commit(*, evaluated: int = 0, failed: int = 0, cancelled: int = 0) -> None:
    def count() -> None:
        for outcome, items in (("evaluated", evaluated), ("failed", failed), ("cancelled", cancelled)):
            if items:
                ITEMS.labels(outcome=outcome).inc(items)

    if evaluated or failed or cancelled:
        transaction.on_commit(count)


def _fail(audit: Audit, reason: str) -> None:
    cancelled = _cancel_pending(audit)
    audit.status, audit.error, audit.finished_at = AuditStatus.FAILED, reason, timezone.now()
    audit.save()
    log.error("audit.failed", audit_id=str(audit.pk), reason=reason, cancelled=cancelled)


def _cancel_pending(audit: Audit) -> int:
    """Within the caller's transaction (the audit row locked): pending items no batch holds
    become cancelled. Returns how many."""
    ids = list(
        AuditItem.objects.select_for_update(skip_locked=True)
        .filter(audit_id=audit.pk, status=ItemStatus.PENDING)
        .values_list("pk", flat=True)
    )
    AuditItem.objects.filter(pk__in=ids).update(status=ItemStatus.CANCELLED)
    audit.cancelled_items += len(ids)
    _count_items_on_commit(cancelled=len(ids))
    return len(ids)


def _settle_leftovers(audit_id) -> None:
    """A cancelled or failed audit whose items a batch put back (it had to wait for the
    quota after settling part of them): they are cancelled, and the audit settled."""
    with transaction.atomic():
        audit = Audit.objects.select_for_update().get(pk=audit_id)
        if audit.status in (AuditStatus.CANCELLED, AuditStatus.FAILED) and _cancel_pending(audit):
            audit.save(update_fields=["cancelled_items"])
        _finish_if_done(audit_id)


def _transition(audit_id, *, allowed: tuple[str, ...], action: str) -> Audit:
    audit = Audit.objects.select_for_update().get(pk=audit_id)
    if audit.status not in allowed:
        raise Conflict(
            f"A {audit.status} audit cannot be {action}.", details={"status": audit.status, "action": action}
        )
    return audit


def audit_pause(*, audit_id) -> Audit:
    with transaction.atomic():
        audit = _transition(audit_id, allowed=(AuditStatus.QUEUED, AuditStatus.RUNNING), action="paused")
        audit.status, audit.paused_at = AuditStatus.PAUSED, timezone.now()
        audit.save(update_fields=["status", "paused_at"])
    log.info("audit.paused", audit_id=str(audit_id))
    return audit


def audit_resume(*, audit_id) -> Audit:
    with transaction.atomic():
        audit = _transition(audit_id, allowed=(AuditStatus.PAUSED,), action="resumed")
        audit.status = AuditStatus.RUNNING if audit.started_at else AuditStatus.QUEUED
        audit.paused_at, audit.last_batch_at = None, timezone.now()
        audit.save(update_fields=["status", "paused_at", "last_batch_at"])
        pending = AuditItem.objects.filter(audit_id=audit_id, status=ItemStatus.PENDING).count()
        for _ in range(_messages_for(pending, audit.batch_size)):
            send_on_commit(RUN_BATCH_TASK, str(audit_id), log_event="audit.enqueue_failed")
        if not pending:
            _finish_if_done(audit_id)
    log.info("audit.resumed", audit_id=str(audit_id), pending=pending)
    return Audit.objects.get(pk=audit_id)


def audit_cancel(*, audit_id) -> Audit:
    """Pending items are cancelled and their credits released at once, unless a batch in
    flight holds some: that batch still commits its verdicts (and charges), and the last
    transaction to see nothing pending releases the rest."""
    with transaction.atomic():
        audit = _transition(
            audit_id,
            allowed=(AuditStatus.QUEUED, AuditStatus.RUNNING, AuditStatus.PAUSED),
            action="cancelled",
        )
        cancelled = _cancel_pending(audit)
        audit.status, audit.finished_at = AuditStatus.CANCELLED, timezone.now()
        audit.save()
        audit_record(
            action="audit.cancelled",
            target_type="audit",
            target_id=audit.pk,
            target_label=audit.input_name,
            facts={"items_cancelled": cancelled},
        )
        _finish_if_done(audit_id)
    log.info("audit.cancelled", audit_id=str(audit_id), cancelled=cancelled)
    return Audit.objects.get(pk=audit_id)


# --- The sweep --------------------------------------------------------------------------------


def audits_sweep() -> int:
    """For the current organisation: re-send the messages of running audits that have
    pending items and no batch for STALLED_AFTER (a message lost with Redis, a worker that
    died between two batches), and settle finished audits a race left unsettled."""
    resent = 0
    stalled = Audit.objects.filter(
        status__in=(AuditStatus.QUEUED, AuditStatus.RUNNING), last_batch_at__lt=timezone.now() - STALLED_AFTER
    )
    for audit in stalled:
        pending = AuditItem.objects.filter(audit_id=audit.pk, status=ItemStatus.PENDING).count()
        with transaction.atomic():
            Audit.objects.filter(pk=audit.pk).update(last_batch_at=timezone.now())
            if pending:
                for _ in range(_messages_for(pending, audit.batch_size)):
                    send_on_commit(RUN_BATCH_TASK, str(audit.pk), log_event="audit.enqueue_failed")
                resent += 1
            else:
                _finish_if_done(audit.pk)
    unsettled = Audit.objects.filter(status__in=FINISHED_STATUSES).exclude(
        credits_reserved=F("credits_charged") + F("credits_released")
    )
    for audit in unsettled:
        _settle_leftovers(audit.pk)
    return resent
