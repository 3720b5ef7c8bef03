"""The job state machine: the only code that changes a job's status.

Runs inside the organisation's schema. Each transition is a conditional UPDATE (so two
workers can never both move a job) plus its JobEvent, in one transaction; credits move in
that same transaction; Celery tasks are sent on commit, never before.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from auditlog.context import actor_on_behalf_of
from billing.services import credits_deduct, credits_refund
from jobs.cache import CachedResult, cache_store, cached_result
from jobs.metrics import (
    JOB_QUEUE_WAIT,
    JOB_REFUNDS,
    JOB_RETRIES,
    JOB_RUN_DURATION,
    JOBS_CREATED,
    JOBS_FINISHED,
)
from jobs.models import EventKind, Job, JobEvent, JobStatus, JobType
from jobs.providers import ProviderError, ProviderResult, default_provider_name, provider_for
from nexus.api.errors import ValidationFailed, field_error, fields_error
from nexus.celery import ENQUEUE_RESENDS, send_on_commit, wait_for_database
from nexus.redis import broker_started_at
from tenants.models import User, WorkerHeartbeat
from webhooks.services import webhook_publish

log = structlog.get_logger(__name__)


class FailOutcome(enum.Enum):
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    IGNORED = "ignored"


def _event(job_id: uuid.UUID, kind: str, *, attempt: int = 0, message: str = "", error: str = "") -> None:
    JobEvent.objects.create(job_id=job_id, kind=kind, attempt=attempt, message=message[:500], error=error)


RUN_JOB_TASK = "jobs.run_job"  # sent by name: jobs.tasks imports this module


def _enqueue(job_id: uuid.UUID, *, countdown: float = 0, resend_reason: str = "") -> None:
    """Send the job's task once the current transaction commits, in this organisation's
    schema. A message sent at once stamps `enqueued_at` when the broker accepts it; a job
    whose send failed keeps it null and the frequent sweep sends it again. A delayed
    message (a retry's countdown) is not stamped: it lives only in the broker and the
    worker holding it, so the database stays the record of the retry and the sweep sends
    it if it has not run shortly after its due time."""

    def stamp() -> None:
        Job.objects.filter(pk=job_id, status=JobStatus.PENDING, enqueued_at__isnull=True).update(
            enqueued_at=timezone.now()
        )
        if resend_reason:
            ENQUEUE_RESENDS.labels(task=RUN_JOB_TASK, reason=resend_reason).inc()

    send_on_commit(
        RUN_JOB_TASK,
        str(job_id),
        countdown=countdown,
        log_event="job.enqueue_failed",
        on_sent=None if countdown else stamp,
    )


def _publish(event_type: str, job: Job) -> None:
    """Record the webhook deliveries of a job's final state in its transaction (outbox).
    The body is the event's own payload (webhooks.payloads), not the API's job."""
    webhook_publish(event_type=event_type, subject=job)


def job_cost(job_type: str) -> int:
    return settings.JOB_COSTS[job_type]


def validate_job_input(*, job_type: str, text, field: str = "text") -> str:
    """The text a job will process; `field` names the input it came from in errors."""
    if job_type not in JobType.values:
        raise ValidationFailed(f"Unknown job type {job_type!r}.")
    if not isinstance(text, str) or not text.strip():
        if field == "text":
            message, detail = "Text to process is required.", "This field may not be blank."
        else:
            message = detail = "The record has no title or text to process."
        raise field_error(field, detail, message=message)
    limit = settings.JOB_MAX_TEXT_CHARS
    if len(text) > limit:
        subject = "The text" if field == "text" else "The record's text"
        raise field_error(
            field,
            f"Ensure this field has no more than {limit} characters.",
            message=f"{subject} is {len(text):,} characters; the limit is {limit:,}.",
        )
    return text


# Text a job can be given by reference instead of in the request: input name -> resolver
# (value -> text). The app that owns such text registers its resolver at start-up (the ETL
# registers `record_id`), so this app never imports it: apps depend one way.
_TEXT_SOURCES: dict[str, Callable[[Any], str]] = {}


def job_text_source_register(*, name: str, resolver: Callable[[Any], str]) -> None:
    _TEXT_SOURCES[name] = resolver


def job_input_build(*, job_type: str, text: str | None = None, record_id: int | None = None) -> dict:
    """The job's input: the text given, or the text of one of the organisation's records
    (remembered by its id). Exactly one of the two, else ValidationFailed (422); a record
    that does not exist in this organisation is NotFound (404), like any of its objects."""
    if job_type not in JobType.values:
        raise ValidationFailed(f"Unknown job type {job_type!r}.")
    if (text is None) == (record_id is None):
        message = (
            "Give either text or record_id, not both."
            if text is not None
            else "Give the text to process, or the record_id of a record to process."
        )
        raise fields_error({"text": [message], "record_id": [message]}, message=message)
    if text is not None:
        return {"text": validate_job_input(job_type=job_type, text=text)}
    resolver = _TEXT_SOURCES.get("record_id")
    if resolver is None:
        message = "Records cannot be processed on this server."
        raise field_error("record_id", message)
    record_text = validate_job_input(job_type=job_type, text=resolver(record_id), field="record_id")
    return {"text": record_text, "record_id": record_id}


def job_create(
    *,
    user: User,
    job_type: str,
    text: str | None = None,
    record_id: int | None = None,
    provider: str | None = None,
) -> Job:
    """Validate, charge and create a pending job in one transaction; the task is sent on
    commit. The text is given, or read from a record (`record_id`); see job_input_build.
    InsufficientCredits (402) leaves nothing written. Identical text of the same type
    within the cache's lifetime is answered at once: a completed job, cost 0."""
    job_input = job_input_build(job_type=job_type, text=text, record_id=record_id)
    text = job_input["text"]
    if provider is None:
        cached = cached_result(job_type=job_type, text=text)
        if cached is not None:
            return _job_from_cache(user=user, job_type=job_type, job_input=job_input, cached=cached)
    cost = job_cost(job_type)
    job_id = uuid.uuid4()
    actor = actor_on_behalf_of(user)
    with transaction.atomic():
        job = Job.objects.create(
            id=job_id,
            user=user,
            actor=actor.label[:300],
            job_type=job_type,
            input=job_input,
            cost=cost,
            max_attempts=settings.JOB_MAX_ATTEMPTS,
            provider=provider or default_provider_name(),
            next_attempt_at=timezone.now(),
        )
        _event(job_id, EventKind.CREATED, message=f"{job_type} job created, {cost} credits charged")
        # Last before the commit: the charge locks the organisation's balance row, and
        # every other charge of the organisation waits for that lock.
        credits_deduct(job_id=job_id, amount=cost, actor_id=actor.uuid, actor_label=actor.label)
        _enqueue(job_id)
    # Counted when the caller's transaction commits (an idempotent request may hold one).
    transaction.on_commit(JOBS_CREATED.labels(job_type=job_type).inc)
    log.info("job.created", job_id=str(job_id), job_type=job_type, cost=cost, provider=job.provider)
    return job


def _job_from_cache(*, user: User, job_type: str, job_input: dict, cached: CachedResult) -> Job:
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.create(
            user=user,
            actor=actor_on_behalf_of(user).label[:300],
            job_type=job_type,
            status=JobStatus.COMPLETED,
            input=job_input,
            output=cached.output,
            cost=0,
            max_attempts=settings.JOB_MAX_ATTEMPTS,
            provider=cached.provider,
            model=cached.model,
            cache_hit=True,
            completed_at=now,
        )
        _event(job.pk, EventKind.CREATED, message=f"{job_type} job created, answered from cache (0 credits)")
        _event(
            job.pk, EventKind.COMPLETED, message=f"served from cache (result of job {cached.source_job_id})"
        )
        _publish("job.completed", job)
    transaction.on_commit(JOBS_CREATED.labels(job_type=job_type).inc)
    transaction.on_commit(JOBS_FINISHED.labels(job_type=job_type, outcome="cache_hit").inc)
    log.info("job.cache_hit", job_id=str(job.pk), job_type=job_type, source_job_id=cached.source_job_id)
    return job


# A message may arrive a little before its due time by the database's clock (the sender's
# and the worker's clocks differ); earlier than this, the claim waits for the sweep.
CLAIM_EARLY_TOLERANCE = timedelta(seconds=1)


def job_claim(*, job_id: uuid.UUID | str, worker: str = "") -> Job | None:
    """Move a pending job to running for its next attempt, recording the `worker` that runs
    it (its heartbeat tells the sweep whether the attempt is still alive). None when the
    job is not pending (already claimed by another worker, finished, or gone) or its retry
    is not due yet (a duplicate message sent by the sweep for an earlier attempt): the
    caller then does nothing. So a job sent twice still runs each attempt once."""
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(skip_locked=True)
            .filter(pk=job_id, status=JobStatus.PENDING)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + CLAIM_EARLY_TOLERANCE))
            .first()
        )
        if job is None or job.attempt_count >= job.max_attempts:
            return None
        due = job.next_attempt_at or job.created_at
        job.status = JobStatus.RUNNING
        job.attempt_count += 1
        job.started_at = now
        job.next_attempt_at = None
        job.enqueued_at = None
        job.worker = worker[:255]
        job.save(
            update_fields=[
                "status",
                "attempt_count",
                "started_at",
                "next_attempt_at",
                "enqueued_at",
                "worker",
                "updated_at",
            ]
        )
        _event(
            job.pk,
            EventKind.STARTED,
            attempt=job.attempt_count,
            message=f"attempt {job.attempt_count} started",
        )
    JOB_QUEUE_WAIT.labels(job_type=job.job_type).observe(max((now - due).total_seconds(), 0.0))
    return job


def _running_attempt(job_id, attempt: int) -> Job | None:
    return (
        Job.objects.select_for_update()
        .filter(pk=job_id, status=JobStatus.RUNNING, attempt_count=attempt)
        .first()
    )


def job_complete(*, job_id: uuid.UUID | str, attempt: int, result: ProviderResult) -> Job | None:
    """Record a successful attempt. None when that attempt no longer owns the job (it was
    timed out and retried, or already finished), so a late worker cannot complete it twice."""
    with transaction.atomic():
        job = _running_attempt(job_id, attempt)
        if job is None:
            log.warning("job.complete_ignored", job_id=str(job_id), attempt=attempt)
            return None
        job.status = JobStatus.COMPLETED
        job.output = result.output
        job.provider = result.provider
        job.model = result.model
        job.error_message = ""
        job.completed_at = timezone.now()
        job.save(
            update_fields=[
                "status",
                "output",
                "provider",
                "model",
                "error_message",
                "completed_at",
                "updated_at",
            ]
        )
        _event(job.pk, EventKind.COMPLETED, attempt=attempt, message=f"completed by {result.provider}")
        _publish("job.completed", job)
        transaction.on_commit(lambda: cache_store(job=job))
    JOBS_FINISHED.labels(job_type=job.job_type, outcome="completed").inc()
    log.info("job.completed", job_id=str(job.pk), attempt=attempt, provider=result.provider)
    return job


def job_fail(
    *, job_id: uuid.UUID | str, attempt: int, error: str, retryable: bool, error_class: str = "error"
) -> FailOutcome:
    """Record a failed attempt. A retryable failure with attempts left goes back to pending
    and is re-sent after JOB_RETRY_DELAY_SECONDS; anything else fails the job and refunds
    its cost in the same transaction. A second call for the same attempt is IGNORED, so
    failing twice refunds once. `error_class` names the kind of failure in the logs (an
    exception's class, `worker_lost`, `timeout`); `error` is what the job's owner sees."""
    with transaction.atomic():
        job = _running_attempt(job_id, attempt)
        if job is None:
            log.warning("job.fail_ignored", job_id=str(job_id), attempt=attempt)
            return FailOutcome.IGNORED
        _event(
            job.pk,
            EventKind.ATTEMPT_FAILED,
            attempt=attempt,
            message=f"attempt {attempt} failed",
            error=error,
        )
        if retryable and job.attempt_count < job.max_attempts:
            delay = settings.JOB_RETRY_DELAY_SECONDS
            job.status = JobStatus.PENDING
            job.error_message = error
            job.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            job.enqueued_at = None  # kept in the database until it has run: see _enqueue
            job.save(
                update_fields=["status", "error_message", "next_attempt_at", "enqueued_at", "updated_at"]
            )
            _event(job.pk, EventKind.RETRY_SCHEDULED, attempt=attempt, message=f"retry in {delay:g} s")
            _enqueue(job.pk, countdown=delay)
            outcome = FailOutcome.RETRY_SCHEDULED
            refunded = 0
        else:
            job.status = JobStatus.FAILED
            job.error_message = error
            job.failed_at = timezone.now()
            job.save(update_fields=["status", "error_message", "failed_at", "updated_at"])
            _event(job.pk, EventKind.FAILED, attempt=attempt, message="job failed", error=error)
            refund = credits_refund(job_id=job.pk, reason=f"refund of failed job {job.pk}")
            _event(job.pk, EventKind.REFUNDED, attempt=attempt, message=f"{refund.amount} credits refunded")
            _publish("job.failed", job)
            outcome = FailOutcome.FAILED
            refunded = refund.amount
    if outcome is FailOutcome.RETRY_SCHEDULED:
        JOB_RETRIES.labels(job_type=job.job_type).inc()
        log.warning(
            "job.retry_scheduled",
            job_id=str(job_id),
            attempt=attempt,
            error_class=error_class,
            next_delay_s=delay,
        )
    else:
        JOBS_FINISHED.labels(job_type=job.job_type, outcome="failed").inc()
        log.error(
            "job.failed", job_id=str(job_id), attempt=attempt, error_class=error_class, refunded=refunded
        )
        if refunded:
            JOB_REFUNDS.labels(job_type=job.job_type).inc()
            log.info("credits.refunded", job_id=str(job_id), amount=refunded)
    return outcome


def job_run(*, job_id: uuid.UUID | str, worker: str = "") -> None:
    """Run one attempt of a job on a worker: claim it (nothing to do when it is not due, or
    another worker has it), call its provider, record the outcome. A provider's error fails
    the attempt (retried when transient); a crash in a provider fails it as retryable, so a
    bug never leaves a job running. The claim and the outcome wait out a database outage
    (see wait_for_database): a task dropped on it would leave its job pending for a sweep,
    or running until the timeout."""
    job = wait_for_database(lambda: job_claim(job_id=job_id, worker=worker), what="job claim")
    if job is None:
        return
    structlog.contextvars.bind_contextvars(job_id=str(job_id), attempt=job.attempt_count)
    try:
        started = time.perf_counter()
        failure: tuple[str, bool, str] | None = None  # (error, retryable, error_class)
        try:
            result = provider_for(job.provider).run(job.job_type, job.text)
        except ProviderError as exc:
            failure = (exc.message, exc.transient, type(exc).__name__)
        except Exception as exc:  # a bug in a provider must not leave the job running
            log.exception("job.provider_crashed")
            failure = (
                f"Internal error while running the job ({type(exc).__name__}).",
                True,
                type(exc).__name__,
            )
        JOB_RUN_DURATION.labels(job_type=job.job_type).observe(time.perf_counter() - started)
        if failure is None:
            wait_for_database(
                lambda: job_complete(job_id=job.pk, attempt=job.attempt_count, result=result),
                what="job completion",
            )
        else:
            error, retryable, error_class = failure
            wait_for_database(
                lambda: job_fail(
                    job_id=job.pk,
                    attempt=job.attempt_count,
                    error=error,
                    retryable=retryable,
                    error_class=error_class,
                ),
                what="job failure",
            )
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "attempt")


def _database_up_for() -> float:
    """Seconds since the database server started."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())")
        return float(cursor.fetchone()[0])


def jobs_sweep() -> dict[str, int]:
    """Recover jobs whose task was lost; runs every JOB_SWEEP_SECONDS. Each recovery goes
    through the same conditional transitions as a worker, so a job sent twice still runs
    each attempt once (only one claim can win) and is refunded at most once.

    - unsent: pending jobs due JOB_RESEND_GRACE_SECONDS ago and not known to be queued
      (the send failed while the broker was down, or a retry's delayed message was lost
      with its worker or with Redis) are sent now;
    - upcoming retries (due before the next sweep) get a copy of their delayed message;
    - not picked up: pending jobs queued more than JOB_REQUEUE_AFTER_SECONDS ago and still
      pending (the broker lost the message) are sent again, and at once those queued before
      the broker last started (a Redis restart without persistence lost their messages);
    - orphaned: running jobs whose worker has not heartbeated for
      JOB_WORKER_DEAD_AFTER_SECONDS, and any running longer than JOB_RUNNING_TIMEOUT_SECONDS,
      are failed as retryable, so they retry or, on their last attempt, fail and refund
      (the heartbeat rule waits until the database has been up for a dead-after period: after
      its restart every heartbeat is stale, the living workers' too).
    """
    now = timezone.now()
    resent = _jobs_resend(
        Job.objects.filter(
            status=JobStatus.PENDING,
            enqueued_at__isnull=True,
            next_attempt_at__lte=now - timedelta(seconds=settings.JOB_RESEND_GRACE_SECONDS),
        ),
        now=now,
        message="due and not queued (the send failed or the delayed message was lost); sent",
        reason="unsent",
    )
    # Retries due before the next sweep get a copy of their delayed message now, timed to
    # their due time: should the original be lost with its worker, the copy runs the retry
    # on time instead of one sweep late. Nothing is stamped (the copy may be lost too, and
    # the rule above covers that); the claim runs the retry once whichever arrives first.
    upcoming = Job.objects.filter(
        status=JobStatus.PENDING,
        enqueued_at__isnull=True,
        attempt_count__gt=0,
        next_attempt_at__gt=now,
        next_attempt_at__lte=now + timedelta(seconds=settings.JOB_SWEEP_SECONDS),
    ).values_list("pk", "next_attempt_at")[:500]
    for job_id, due in upcoming:
        _enqueue(job_id, countdown=max((due - now).total_seconds(), 0.01))
    requeued = _jobs_resend(
        Job.objects.filter(
            status=JobStatus.PENDING,
            enqueued_at__lt=now - timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS),
        ),
        now=now,
        message="task was not picked up; sent again",
        reason="not_picked_up",
    )
    broker_started = broker_started_at()
    if broker_started is not None:
        requeued += _jobs_resend(
            Job.objects.filter(status=JobStatus.PENDING, enqueued_at__lt=broker_started),
            now=now,
            message="queued before the broker restarted, which lost the message; sent again",
            reason="broker_restarted",
        )

    dead_after = now - timedelta(seconds=settings.JOB_WORKER_DEAD_AFTER_SECONDS)
    alive = WorkerHeartbeat.objects.filter(beat_at__gte=dead_after).values("name")
    orphaned = list(
        Job.objects.filter(status=JobStatus.RUNNING, started_at__lt=dead_after)
        .exclude(worker="")
        .exclude(worker__in=alive)
        .values_list("pk", "attempt_count")[:500]
    )
    # Nobody could heartbeat while the database was down: until it has been up for a whole
    # dead-after period, a stale heartbeat says nothing about its worker. (Asked only when
    # there is a job to judge, so an idle sweep costs no extra query.)
    if orphaned and _database_up_for() < settings.JOB_WORKER_DEAD_AFTER_SECONDS:
        orphaned = []
    stuck = list(
        Job.objects.filter(
            status=JobStatus.RUNNING,
            started_at__lt=now - timedelta(seconds=settings.JOB_RUNNING_TIMEOUT_SECONDS),
        ).values_list("pk", "attempt_count")[:500]
    )
    worker_lost = timed_out = 0
    for job_id, attempt in orphaned:
        outcome = job_fail(
            job_id=job_id,
            attempt=attempt,
            error="The worker running the job stopped.",
            retryable=True,
            error_class="worker_lost",
        )
        worker_lost += outcome is not FailOutcome.IGNORED
    for job_id, attempt in stuck:
        outcome = job_fail(
            job_id=job_id,
            attempt=attempt,
            error="The worker was lost or the attempt timed out.",
            retryable=True,
            error_class="timeout",
        )
        timed_out += outcome is not FailOutcome.IGNORED
    counts = {"resent": resent, "requeued": requeued, "worker_lost": worker_lost, "timed_out": timed_out}
    if any(counts.values()):
        log.info("jobs.swept", **counts)
    return counts


def _jobs_resend(pending, *, now, message: str, reason: str) -> int:
    """Send each of the `pending` jobs again (at most 500 per sweep), with a `requeued`
    event; `enqueued_at` is stamped when the broker accepts the message."""
    sent = 0
    for job_id, attempt in pending.values_list("pk", "attempt_count")[:500]:
        with transaction.atomic():
            updated = Job.objects.filter(pk=job_id, status=JobStatus.PENDING).update(
                enqueued_at=None, updated_at=now
            )
            if updated:
                _event(job_id, EventKind.REQUEUED, attempt=attempt, message=message)
                _enqueue(job_id, resend_reason=reason)
                sent += 1
    return sent
