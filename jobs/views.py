"""Pages: the dashboard and the jobs page (submit, follow the result, history)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_POST

from billing.selectors import credits_recent, credits_spent_per_day
from billing.views import balance_context
from jobs import selectors, services
from jobs.models import FINISHED_STATUSES, JobType
from nexus.api.errors import AppError, PaymentRequired
from nexus.pages import org_page, page_context

# A narrow canvas: scaled down to a phone, its 13px labels stay readable.
CHART_WIDTH, CHART_HEIGHT, CHART_BASE = 420, 230, 190


def spending_chart(days: int = 7) -> dict:
    """Bars for an SVG drawn by the template: no JavaScript needed to read it."""
    spent = credits_spent_per_day(days=days)
    top = max((value for _, value in spent), default=0) or 1
    slot = CHART_WIDTH / len(spent)
    bars = []
    for index, (day, value) in enumerate(spent):
        height = round(value / top * (CHART_BASE - 30))
        bars.append(
            {
                "x": round(index * slot + slot * 0.15, 1),
                "width": round(slot * 0.7, 1),
                "y": CHART_BASE - height,
                "height": height,
                "label_x": round(index * slot + slot / 2, 1),
                "value": value,
                "value_y": CHART_BASE - height - 6,
                "day": day.strftime("%a %d"),
                "date": day.strftime("%a %d %b"),
            }
        )
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
            transactions=credits_recent(limit=10),
            chart=spending_chart(),
            **balance_context(),
        ),
    )


def _history():
    return selectors.job_list().order_by("-created_at")[:20]


@org_page
def jobs_page(request):
    return render(
        request,
        "jobs/jobs.html",
        page_context(request, nav="jobs", jobs=_history(), costs=settings.JOB_COSTS),
    )


def _result(request, job, *, status: int = 200):
    return render(
        request,
        "jobs/_result.html",
        {"job": job, "finished": job.status in FINISHED_STATUSES, "jobs": _history()},
        status=status,
    )


@require_POST
@org_page
def submit(request):
    job_type = request.POST.get("job_type", "")
    text = request.POST.get("text", "")
    if job_type not in JobType.values:
        return render(request, "jobs/_problem.html", {"message": "Choose Summarise or Analyse."})
    try:
        job = services.job_create(user=request.user, job_type=job_type, text=text)
    except PaymentRequired as exc:
        return render(request, "jobs/_problem.html", {"message": exc.message, "billing_link": True})
    except AppError as exc:
        return render(request, "jobs/_problem.html", {"message": exc.message})
    return _result(request, job)


@org_page
def result(request, job_id):
    return _result(request, selectors.job_get(job_id=job_id))
