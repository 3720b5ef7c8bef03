"""Job endpoints: submit summarise/analyse work, read jobs and their timelines, usage."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from billing.selectors import credits_spent_per_day, window_start
from jobs import selectors, services
from jobs.models import JobStatus, JobType
from jobs.serializers import JobDetailOutput, JobEventOutput, JobInput, JobOutput, UsageOutput
from nexus.api.errors import field_error
from nexus.api.pagination import paginated
from nexus.api.query import (
    apply_sort,
    date_parameter,
    date_range,
    multi_value,
    multi_value_parameter,
    sort_parameter,
)
from nexus.api.versioning import versioned
from nexus.api.views import OrganisationEndpoint
from nexus.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from nexus.schema import COMPLETE_LIST, error_statuses


class _SubmitJobView(OrganisationEndpoint):
    key_scopes = {"POST": "jobs:write"}

    job_type: str = ""

    @idempotent
    def post(self, request, *args, **kwargs):
        payload = JobInput(data=request.data)
        payload.is_valid(raise_exception=True)
        job = services.job_create(
            user=request.user,
            job_type=self.job_type,
            text=payload.validated_data.get("text"),
            record_id=payload.validated_data.get("record_id"),
        )
        # A cache hit is finished already: 201 with the result. Otherwise 202: poll the job.
        code = status.HTTP_201_CREATED if job.cache_hit else status.HTTP_202_ACCEPTED
        return Response(versioned(JobOutput, request)(job).data, status=code)


class SummarizeView(_SubmitJobView):
    job_type = JobType.SUMMARIZE

    @extend_schema(
        summary="Summarise a text (10 credits)",
        description=(
            "Charges 10 credits and queues the job (202); poll GET /jobs/{id} for the result. "
            "Send `text`, or `record_id` to summarise one of the organisation's records "
            "(exactly one; 404 for an unknown record). Identical text submitted within the "
            "hour is answered from the cache: 201, the completed job, 0 credits."
        ),
        request=JobInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: JobOutput, 202: JobOutput},
        extensions=error_statuses({402: "PAYMENT_REQUIRED: not enough credits for this job."}),
        tags=["jobs"],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class AnalyzeView(_SubmitJobView):
    job_type = JobType.ANALYZE

    @extend_schema(
        summary="Analyse a text: sentiment, key phrases, reading time, statistics (25 credits)",
        description=(
            "Send `text`, or `record_id` to analyse one of the organisation's records "
            "(exactly one; 404 for an unknown record)."
        ),
        request=JobInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: JobOutput, 202: JobOutput},
        extensions=error_statuses({402: "PAYMENT_REQUIRED: not enough credits for this job."}),
        tags=["jobs"],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class JobListView(OrganisationEndpoint):
    key_scopes = {"GET": "jobs:read"}

    @extend_schema(
        summary="Jobs of the organisation",
        parameters=[
            multi_value_parameter("status", allowed=set(JobStatus.values)),
            multi_value_parameter("job_type", allowed=set(JobType.values)),
            date_parameter("from", "created on or after (ISO date or date-time)"),
            date_parameter("to", "created on or before (ISO date or date-time); not before `from`"),
            sort_parameter(allowed={"created_at", "status", "job_type", "cost"}, default="-created_at"),
        ],
        responses={200: JobOutput(many=True)},
        tags=["jobs"],
    )
    def get(self, request, *args, **kwargs):
        jobs = selectors.job_list(
            statuses=multi_value(request, "status", allowed=set(JobStatus.values)),
            job_types=multi_value(request, "job_type", allowed=set(JobType.values)),
        )
        jobs = date_range(jobs, request, field="created_at")
        jobs = apply_sort(
            jobs, request, allowed={"created_at", "status", "job_type", "cost"}, default="-created_at"
        )
        return paginated(request, jobs, versioned(JobOutput, request))


class JobDetailView(OrganisationEndpoint):
    key_scopes = {"GET": "jobs:read"}

    @extend_schema(
        summary="One job, with its input and result", responses={200: JobDetailOutput}, tags=["jobs"]
    )
    def get(self, request, job_id, *args, **kwargs):
        return Response(versioned(JobDetailOutput, request)(selectors.job_get(job_id=job_id)).data)


class JobEventListView(OrganisationEndpoint):
    key_scopes = {"GET": "jobs:read"}

    @extend_schema(
        summary="The job's timeline, oldest first",
        responses={200: JobEventOutput(many=True)},
        tags=["jobs"],
        extensions=COMPLETE_LIST,
    )
    def get(self, request, job_id, *args, **kwargs):
        job = selectors.job_get(job_id=job_id)
        return Response(JobEventOutput(selectors.job_events(job=job), many=True).data)


class UsageView(OrganisationEndpoint):
    key_scopes = {"GET": "jobs:read"}

    @extend_schema(
        summary="Credits spent per day and jobs by status and type",
        parameters=[
            OpenApiParameter(
                "days", {"type": "integer", "minimum": 1, "maximum": 90, "default": 7}, description="1 to 90"
            )
        ],
        responses={200: UsageOutput},
        tags=["analytics"],
    )
    def get(self, request, *args, **kwargs):
        raw = request.query_params.get("days", "7")
        try:
            days = int(raw)
        except ValueError:
            days = 0
        if not 1 <= days <= 90:
            raise field_error(
                "days", f"Invalid value: {raw!r}.", message="days must be a whole number from 1 to 90."
            )
        counts = selectors.job_counts_since(start=window_start(days))
        return Response(
            UsageOutput(
                {
                    "days": days,
                    "credits_spent_per_day": [
                        {"date": day, "credits": spent} for day, spent in credits_spent_per_day(days=days)
                    ],
                    "jobs_by_status": counts["by_status"],
                    "jobs_by_type": counts["by_type"],
                }
            ).data
        )
