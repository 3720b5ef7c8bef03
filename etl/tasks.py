"""Celery tasks for the ETL: thin; the runner is etl.services."""

from __future__ import annotations

import structlog
from celery import shared_task
from django.conf import settings
from django_tenants.utils import tenant_context

from etl import scheduler_stats, services
from etl.models import EtlRun, RunStatus, RunTrigger
from nexus.api.errors import Conflict
from nexus.celery import wait_for_database, worker_identity
from tenants.models import Organisation

log = structlog.get_logger(__name__)


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
    run = wait_for_database(
        lambda: EtlRun.objects.select_related("source").filter(pk=run_id, status=RunStatus.QUEUED).first(),
        what="ETL run",
    )
    if run is None:
        return
    # Only a run the schedule started is stopped on purpose. The run after a failure is a
    # resume (whoever queued it) and must be free to finish, or nothing would ever complete
    # while the setting is on.
    fail_after = settings.ETL_SCHEDULED_FAIL_AFTER if run.trigger == RunTrigger.SCHEDULE else None
    try:
        hostname = self.request.hostname
        services.etl_run_slice(
            run=run, fail_after=fail_after, worker=worker_identity(hostname) if hostname else ""
        )
    except Conflict:
        log.info("etl.run_skipped_running", run_id=run_id)


@shared_task(name="etl.dispatch_due", ignore_result=True)
def dispatch_due() -> None:
    for org in Organisation.objects.filter(is_active=True).exclude(schema_name="public"):
        with tenant_context(org):
            dispatch_organisation.delay()
    scheduler_stats.record_dispatch()  # after the fan-out: a dispatch that died is not stamped


@shared_task(name="etl.dispatch_organisation", ignore_result=True)
def dispatch_organisation() -> None:
    services.etl_dispatch_due()


@shared_task(name="etl.sweep", ignore_result=True)
def sweep() -> None:
    for org in Organisation.objects.filter(is_active=True).exclude(schema_name="public"):
        with tenant_context(org):
            # Dropped if not started within a period: the next sweep does the same work.
            sweep_organisation.apply_async(expires=settings.JOB_SWEEP_SECONDS)


@shared_task(name="etl.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.etl_runs_sweep()
