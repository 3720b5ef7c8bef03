"""Celery tasks for jobs. Thin: each calls one service with the ids it was sent; the
decisions are the services'. Each runs in the schema it was sent from."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from jobs import services
from nexus.celery import fan_out, worker_identity


# Below JOB_RUNNING_TIMEOUT_SECONDS, after which the sweep treats a running job as lost.
@shared_task(
    bind=True,
    name="jobs.run_job",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=240,
    time_limit=270,
)
def run_job(self, job_id: str) -> None:
    hostname = self.request.hostname
    services.job_run(job_id=job_id, worker=worker_identity(hostname) if hostname else "")


@shared_task(name="jobs.sweep", ignore_result=True)
def sweep() -> None:
    # Dropped if not started within a period: the next sweep does the same work.
    fan_out("jobs.sweep_organisation", expires=settings.JOB_SWEEP_SECONDS)


@shared_task(name="jobs.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.jobs_sweep()
