"""Pages: the dashboard and the jobs page (submit, follow the result, history)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.selectors import credits_recent, credits_spent_per_day
from billing.views import balance_context
from jobs import selectors, services
from jobs.models import FINISHED_STATUSES, JobType
from nexus.api.errors import AppError, NotFound, PaymentRequired, ValidationFailed
from nexus.charts import bar_geometry
from nexus.pages import is_htmx, org_page, page_context
from webhooks import selectors as webhook_selectors

# A narrow canvas: scaled down to a phone, its 13px labels stay readable.
CHART_WIDTH, CHART_HEIGHT, CHART_BASE = 420, 230, 190


def spending_chart(days: int = 7) -> dict:
    """Bars for an SVG drawn by the template: no JavaScript needed to read it."""
    spent = credits_spent_per_day(days=days)
    geometry = bar_geometry(
        [value for _, value in spent],
        width=CHART_WIDTH,
        base=CHART_BASE,
        headroom=CHART_BASE - 30,
        label_gap=6,
    )
    bars = [
        {**bar, "day": day.strftime("%a %d"), "date": day.strftime("%a %d %b")}
        for bar, (day, _value) in zip(geometry, spent, strict=True)
    ]
    total = sum(value for _, value in spent)
    return {
        "bars": bars,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "base": CHART_BASE,
        "total": total,
        "summary": ", ".join(f"{b['date']}: {b['value']}" for b in bars),
    }


@org_page
def dashboard(request):
    return render(
        request,
        "jobs/dashboard.html",
        page_context(
            request,
            nav="dashboard",
            webhook_notices=webhook_selectors.notice_list_open(),
            transactions=credits_recent(limit=10),
            chart=spending_chart(),
            **balance_context(),
        ),
    )


def _history():
    return selectors.job_list().order_by("-created_at")[:20]


def _shown_job(request):
    """The job named by ?job=<id> (where a submit without JavaScript lands), if any."""
    job_id = request.GET.get("job")
    if not job_id:
        return None
    try:
        return selectors.job_get(job_id=job_id)
    except NotFound:
        return None  # an old or foreign link: the page without it


def _jobs_page(request, *, job=None, problem=None, text="", status: int = 200):
    return render(
        request,
        "jobs/jobs.html",
        page_context(
            request,
            nav="jobs",
            jobs=_history(),
            costs=settings.JOB_COSTS,
            job=job,
            finished=job is not None and job.status in FINISHED_STATUSES,
            problem=problem,
            text=text,
        ),
        status=status,
    )


@org_page
def jobs_page(request):
    return _jobs_page(request, job=_shown_job(request))


def _result(request, job, *, with_history: bool):
    """The result panel. The history comes with it (swapped out of band) when it has
    something new to show: a job just created, a status the page has not seen, the end."""
    finished = job.status in FINISHED_STATUSES
    return render(
        request,
        "jobs/_result_response.html",
        {
            "job": job,
            "finished": finished,
            "jobs": _history(),
            "with_history": with_history or finished,
        },
    )


@require_POST
@org_page
def submit(request):
    """HTMX answers the result panel. Without JavaScript the form posts here too: a created
    job redirects to /jobs?job=<id> (so a reload cannot charge twice); a refusal shows the
    page again with the reason and the text kept."""
    job_type = request.POST.get("job_type", "")
    text = request.POST.get("text", "")
    problem = None
    job = None
    if job_type not in JobType.values:
        problem = {"message": "Choose Summarise or Analyse."}
    else:
        try:
            job = services.job_create(user=request.user, job_type=job_type, text=text)
        except PaymentRequired as exc:
            problem = {"message": exc.message, "billing_link": True}
        except ValidationFailed as exc:
            problem = {"message": exc.message, "invalid": True}
        except AppError as exc:
            problem = {"message": exc.message}
    if not is_htmx(request):
        if job is not None:
            return redirect(f"/jobs?job={job.pk}")
        return _jobs_page(request, problem=problem, text=text)
    if job is None:
        return render(request, "jobs/_problem.html", problem)
    return _result(request, job, with_history=True)


@org_page
def result(request, job_id):
    job = selectors.job_get(job_id=job_id)
    return _result(request, job, with_history=request.GET.get("shown") != job.status)
