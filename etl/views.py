"""Data pages: sources with their stats and runs, run now, and the newest records."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from etl import selectors, services
from etl.models import RunTrigger
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
