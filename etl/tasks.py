"""Celery tasks for the ETL. Thin: each calls one service (etl.services) with the ids it
was sent; the runner and its decisions are the services'."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from etl import scheduler_stats, services
from nexus.celery import fan_out, worker_identity


@shared_task(
    bind=True,
    name="etl.execute_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=settings.ETL_SLICE_TIME_LIMIT,
    time_limit=settings.ETL_SLICE_TIME_LIMIT + 60,
)
def execute_run(self, run_id: str) -> None:
    """One slice of a queued run; the service queues the next slice, or waits for a slot."""
    hostname = self.request.hostname
    services.etl_run_execute(run_id=run_id, worker=worker_identity(hostname) if hostname else "")


@shared_task(name="etl.dispatch_due", ignore_result=True)
def dispatch_due() -> None:
    fan_out("etl.dispatch_organisation")
    scheduler_stats.record_dispatch()  # after the fan-out: a dispatch that died is not stamped


@shared_task(name="etl.dispatch_organisation", ignore_result=True)
def dispatch_organisation() -> None:
    services.etl_dispatch_due()


@shared_task(name="etl.sweep", ignore_result=True)
def sweep() -> None:
    # Dropped if not started within a period: the next sweep does the same work.
    fan_out("etl.sweep_organisation", expires=settings.JOB_SWEEP_SECONDS)


@shared_task(name="etl.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.etl_runs_sweep()
