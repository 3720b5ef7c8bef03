"""Data pages: sources with their stats and runs, run now, add and edit a source, upload a
source's file, the newest records, and a record sent to an AI job (through jobs' services:
the ETL uses jobs, never the reverse). Every change goes through the services the API uses."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from etl import selectors, services, uploads
from etl.forms import MAPPING_PLACEHOLDER, SourceForm
from etl.models import RunTrigger, SourceKind
from jobs import services as job_services
from nexus.api.errors import AppError, PayloadTooLarge
from nexus.pages import is_htmx, org_page, page_context


@org_page
def data_page(request):
    search = request.GET.get("search", "").strip()[:200]
    records = selectors.record_list(search=search).order_by("-published_at", "id")[:50]
    stats = selectors.source_stats()
    sources = {source.pk: source for source in selectors.source_list()}
    for row in stats:
        row["source"] = sources.get(row["source_id"])
    return render(
        request,
        "etl/data.html",
        page_context(
            request,
            nav="data",
            stats=stats,
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


def _source_form_page(request, form: SourceForm, *, source=None, error: str = "", status: int = 200):
    return render(
        request,
        "etl/source_form.html",
        page_context(
            request,
            nav="data",
            form=form,
            source=source,
            error=error,
            mapping_placeholder=MAPPING_PLACEHOLDER,
        ),
        status=status,
    )


@require_http_methods(["GET", "POST"])
@org_page(admin=True)
def source_add(request):
    """Connect a source (admins, like POST /api/v1/etl/sources)."""
    if request.method == "GET":
        return _source_form_page(request, SourceForm())
    form = SourceForm(request.POST)
    if not form.is_valid():
        return _source_form_page(request, form, status=422)
    try:
        source = services.etl_source_create(**form.service_arguments())
    except AppError as exc:
        return _source_form_page(request, form, error=exc.message, status=exc.status_code)
    hint = " Upload its file below." if source.kind != SourceKind.API and not source.config.get("url") else ""
    if source.config.get("path"):
        hint = ""
    messages.success(request, f"{source.name}: source added.{hint}")
    return redirect("/data")


@require_http_methods(["GET", "POST"])
@org_page(admin=True)
def source_edit(request, source_id):
    """Change a source (admins, like PATCH /api/v1/etl/sources/{id}); its kind stays."""
    source = selectors.source_get(source_id=source_id)  # another organisation's: 404 (org_page)
    if request.method == "GET":
        return _source_form_page(request, SourceForm(source=source), source=source)
    form = SourceForm(request.POST, source=source)
    if not form.is_valid():
        return _source_form_page(request, form, source=source, status=422)
    try:
        services.etl_source_update(source=source, **form.service_arguments())
    except AppError as exc:
        source.refresh_from_db()
        return _source_form_page(request, form, source=source, error=exc.message, status=exc.status_code)
    messages.success(request, f"{source.name}: saved.")
    return redirect("/data")


def _file_answer(request, *, source, error: str = "", notice: str = ""):
    """With HTMX, the source's file cell in place (200 even for an error, so HTMX swaps it
    and the message is read out); without, back to the page with a message."""
    if is_htmx(request):
        return render(
            request,
            "etl/_source_file.html",
            {"source": source, "error": error, "notice": notice, "is_admin": True},
        )
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)
    return redirect("/data")


@csrf_exempt  # checked below, once the bounded upload handlers are in place
def source_file_upload(request, source_id):
    """Upload a CSV/RSS source's file (admins, like POST /api/v1/etl/sources/{id}/file).

    The CSRF check reads the form, and so the body: the size-limiting upload handler must be
    installed before it, hence CSRF is checked inside rather than by the middleware."""
    uploads.install_upload_handlers(request)
    try:
        return _source_file_upload(request, source_id)
    except PayloadTooLarge as exc:
        # Raised while the body was read, before CSRF or permissions could be checked:
        # nothing was done, so nothing more is said than the limit.
        source = None
        if request.user.is_authenticated and request.tenant is not None:
            try:
                source = selectors.source_get(source_id=source_id)
            except AppError:
                source = None
        if source is None or not is_htmx(request):
            messages.error(request, exc.message)
            return redirect("/data")
        return _file_answer(request, source=source, error=exc.message)


@require_POST
@org_page(admin=True)  # before the CSRF check: no body is read for a caller who may not upload
@csrf_protect
def _source_file_upload(request, source_id):
    source = selectors.source_get(source_id=source_id)
    try:
        source = services.etl_source_file_upload(source=source, file=request.FILES.get("file"))
    except AppError as exc:
        return _file_answer(request, source=source, error=exc.message)
    return _file_answer(
        request,
        source=source,
        notice=(
            f"{source.name}: {source.file_name} uploaded ({source.file_size} bytes); the next run reads it."
        ),
    )


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
