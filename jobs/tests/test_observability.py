"""What the jobs tell an operator: their series move with each transition, and retries,
failures and refunds are logged as searchable events."""

from __future__ import annotations

import logging

import pytest
from django_tenants.utils import tenant_context

from jobs import services
from jobs.tests.factories import job_create
from nexus.tests.metric_values import Moved

pytestmark = pytest.mark.django_db


def _events(caplog, name: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def test_a_completed_job_is_counted_with_its_wait_run_and_charge(
    funded, broker, django_capture_on_commit_callbacks
):
    with tenant_context(funded.org_a), Moved() as moved:
        with django_capture_on_commit_callbacks(execute=True):
            job = job_create(user=funded.admin_a, text="The launch went well. Sales rose.")
        services.job_run(job_id=job.pk)
    assert moved("nexus_jobs_created_total", job_type="summarize") == 1
    assert moved("nexus_jobs_finished_total", job_type="summarize", outcome="completed") == 1
    assert moved("nexus_job_queue_wait_seconds_count", job_type="summarize") == 1
    assert moved("nexus_job_run_duration_seconds_count", job_type="summarize") == 1
    assert moved("nexus_credits_total", kind="deduction") == job.cost


def test_a_retry_is_counted_and_logged_with_attempt_class_and_delay(funded, broker, caplog, settings):
    caplog.set_level(logging.INFO, logger="jobs.services")
    with tenant_context(funded.org_a), Moved() as moved:
        job = job_create(user=funded.admin_a, text="Quarterly figures.")
        services.job_claim(job_id=job.pk)
        services.job_fail(
            job_id=job.pk, attempt=1, error="busy", retryable=True, error_class="TransientProviderError"
        )
    assert moved("nexus_job_retries_total", job_type="summarize") == 1
    (line,) = _events(caplog, "job.retry_scheduled")
    assert line["job_id"] == str(job.pk)
    assert line["attempt"] == 1
    assert line["error_class"] == "TransientProviderError"
    assert line["next_delay_s"] == settings.JOB_RETRY_DELAY_SECONDS
    assert line["level"] == "warning"


def test_a_failed_job_is_counted_refunded_and_logged(
    funded, broker, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO, logger="jobs.services")
    with tenant_context(funded.org_a), Moved() as moved:
        job = job_create(user=funded.admin_a, text="Quarterly figures.")
        services.job_claim(job_id=job.pk)
        with django_capture_on_commit_callbacks(execute=True):
            services.job_fail(
                job_id=job.pk,
                attempt=1,
                error="refused",
                retryable=False,
                error_class="PermanentProviderError",
            )
    assert moved("nexus_jobs_finished_total", job_type="summarize", outcome="failed") == 1
    assert moved("nexus_job_refunds_total", job_type="summarize") == 1
    assert moved("nexus_credits_total", kind="refund") == job.cost
    (failed,) = _events(caplog, "job.failed")
    assert failed["level"] == "error"
    assert failed["error_class"] == "PermanentProviderError"
    (refunded,) = _events(caplog, "credits.refunded")
    assert refunded["amount"] == job.cost


def test_a_cache_hit_is_counted_as_its_own_outcome(funded, broker, django_capture_on_commit_callbacks):
    text = "Identical text answered from the cache the second time."
    with tenant_context(funded.org_a):
        with django_capture_on_commit_callbacks(execute=True):
            first = services.job_create(user=funded.admin_a, job_type="summarize", text=text)
        with django_capture_on_commit_callbacks(execute=True):
            services.job_run(job_id=first.pk)
        with Moved() as moved, django_capture_on_commit_callbacks(execute=True):
            services.job_create(user=funded.admin_a, job_type="summarize", text=text)
    assert moved("nexus_jobs_finished_total", job_type="summarize", outcome="cache_hit") == 1
