"""Celery tasks for jobs. Thin: they look the job up by id, call the services, and return
early when there is nothing to do. Each runs in the schema it was sent from."""

from __future__ import annotations

import structlog
from celery import shared_task
from django.conf import settings
from django_tenants.utils import tenant_context

from jobs import services
from jobs.providers import ProviderError, provider_for
from nexus.celery import wait_for_database, worker_identity
from tenants.models import Organisation

log = structlog.get_logger(__name__)


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
    worker = worker_identity(hostname) if hostname else ""
    # Claim and outcome wait out a database outage (see wait_for_database): a task dropped
    # on it would leave its job pending for a sweep, or running until the timeout.
    job = wait_for_database(lambda: services.job_claim(job_id=job_id, worker=worker), what="job claim")
    if job is None:
        return
    structlog.contextvars.bind_contextvars(job_id=job_id, attempt=job.attempt_count)
    try:
        result = provider_for(job.provider).run(job.job_type, job.text)
    except ProviderError as exc:
        error, transient = exc.message, exc.transient
        wait_for_database(
            lambda: services.job_fail(
                job_id=job.pk, attempt=job.attempt_count, error=error, retryable=transient
            ),
            what="job failure",
        )
        return
    except Exception as exc:  # a bug in a provider must not leave the job running
        log.exception("job.provider_crashed")
        error = f"Internal error while running the job ({type(exc).__name__})."
        wait_for_database(
            lambda: services.job_fail(job_id=job.pk, attempt=job.attempt_count, error=error, retryable=True),
            what="job failure",
        )
        return
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "attempt")
    wait_for_database(
        lambda: services.job_complete(job_id=job.pk, attempt=job.attempt_count, result=result),
        what="job completion",
    )


@shared_task(name="jobs.sweep", ignore_result=True)
def sweep() -> None:
    """Fan out one sweep per active organisation, each sent in that organisation's schema."""
    for org in Organisation.objects.filter(is_active=True).exclude(schema_name="public"):
        with tenant_context(org):
            # Dropped if not started within a period: the next sweep does the same work.
            sweep_organisation.apply_async(expires=settings.JOB_SWEEP_SECONDS)


@shared_task(name="jobs.sweep_organisation", ignore_result=True)
def sweep_organisation() -> None:
    services.jobs_sweep()
