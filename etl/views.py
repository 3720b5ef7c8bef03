"""Data pages: sources with their stats and runs, run now, the newest records, and a
record sent to an AI job (through jobs' services: the ETL uses jobs, never the reverse)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from etl import selectors, services
from etl.models import RunTrigger
from jobs import services as job_services
from nexus.api.errors import AppError
from nexus.pages import org_page, page_context


@org_page
def data_page(request):
    search = request.GET.get("search", "").strip()[:200]
    records = selectors.record_list(search=search).order_by("-published_at", "id")[:50]
    return render(
        request,
        "etl/data.html",
        page_context(
            request,
            nav="data",
            stats=selectors.source_stats(),
            runs=selectors.run_list()[:10],
            records=records,
            search=search,
            costs=settings.JOB_COSTS,
        ),
    )


@require_POST
@org_page(admin=True)
def run_now(request, source_id):
    source = selectors.source_get(source_id=source_id)
    try:
        services.etl_run_queue(source=source, trigger=RunTrigger.MANUAL)
        messages.success(request, f"{source.name}: run queued.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect("/data")


@require_POST
@org_page
def record_job(request, record_id):
    """Summarise or analyse one record (any member, like every job): the job is created
    and charged as from the jobs page, and the jobs page shows it."""
    record = selectors.record_get(record_id=record_id)  # another organisation's: 404 (org_page)
    try:
        job = job_services.job_create(
            user=request.user, job_type=request.POST.get("job_type", ""), record_id=record.pk
        )
    except AppError as exc:
        messages.error(request, exc.message)
        return redirect("/data")
    what = job.get_job_type_display()
    cost = "answered from the cache" if job.cache_hit else f"{job.cost} credits"
    messages.success(request, f"{what} job for “{record.title or record.external_id}” created ({cost}).")
    return redirect("/jobs")
