"""Celery tasks for audits. Thin: each calls one service with the ids it was sent."""

from __future__ import annotations

import structlog
from celery import shared_task

from audits import services
from nexus.celery import fan_out

log = structlog.get_logger(__name__)

# A batch that keeps being sent back (quota, throttling) keeps its place this many times,
# then waits for the sweep.
MAX_REQUEUES = 50


@shared_task(name="audits.run_batch", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_batch(audit_id: str, attempt: int = 0) -> None:
    try:
        services.audit_run_batch(audit_id=audit_id, attempt=attempt)
    except services.Requeue as requeue:
        if attempt >= MAX_REQUEUES:
            log.warning("audit.batch_left_to_sweep", audit_id=audit_id, reason=requeue.reason)
            return
        run_batch.apply_async(args=[audit_id], kwargs={"attempt": attempt + 1}, countdown=requeue.delay)


@shared_task(name="audits.sweep", ignore_result=True)
def sweep() -> None:
    fan_out("audits.sweep_organisation", expires=60)


@shared_task(name="audits.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.audits_sweep()
