"""Reads of jobs (organisation schema). A job id from a caller is looked up only here;
another organisation's job does not exist in this schema, so it is the same 404."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Count, QuerySet

from jobs.models import Job, JobEvent, JobStatus, JobType
from nexus.access import access_by_id


def job_get(*, job_id: uuid.UUID | str) -> Job:
    return access_by_id(Job.objects.all(), job_id, not_found="No such job.")


def job_list(
    *,
    statuses: list[str] | None = None,
    job_types: list[str] | None = None,
) -> QuerySet[Job]:
    jobs = Job.objects.all()
    if statuses:
        jobs = jobs.filter(status__in=statuses)
    if job_types:
        jobs = jobs.filter(job_type__in=job_types)
    return jobs


def job_events(*, job: Job) -> QuerySet[JobEvent]:
    return job.events.order_by("created_at", "id")


def job_counts_since(*, start: datetime) -> dict[str, dict[str, int]]:
    recent = Job.objects.filter(created_at__gte=start)
    by_status = {status: 0 for status in JobStatus.values}
    by_status.update({row["status"]: row["n"] for row in recent.values("status").annotate(n=Count("id"))})
    by_type = {job_type: 0 for job_type in JobType.values}
    by_type.update({row["job_type"]: row["n"] for row in recent.values("job_type").annotate(n=Count("id"))})
    return {"by_status": by_status, "by_type": by_type}
