"""The admin's operations page (/admin/operations/, staff only: the URL wraps it in
admin.site.admin_view). It draws what nexus.operations reads; its charts are SVG drawn by
the template from the geometry computed here, with no script and no inline style, as the
Content-Security-Policy requires."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin
from django.template.response import TemplateResponse
from django.views.decorators.http import require_safe

from nexus.charts import bar_geometry
from nexus.operations import (
    BUCKET_SECONDS,
    BUCKETS,
    DISABLED_ENDPOINTS_SHOWN,
    FAILURE_KINDS,
    operations_overview,
)

# Queue depths: one horizontal bar per queue, its name on the left, its depth on the right.
QUEUE_CHART_WIDTH, QUEUE_LABEL_WIDTH, QUEUE_VALUE_WIDTH, QUEUE_ROW_HEIGHT = 420, 90, 60, 26
# Failures: a small column chart per kind, one column per ten minutes.
FAILURE_CHART_WIDTH, FAILURE_CHART_HEIGHT, FAILURE_CHART_BASE = 300, 130, 104


def queue_chart(depths: dict[str, int]) -> dict:
    top = max(depths.values(), default=0) or 1
    room = QUEUE_CHART_WIDTH - QUEUE_LABEL_WIDTH - QUEUE_VALUE_WIDTH
    bars = []
    for index, (queue, depth) in enumerate(sorted(depths.items())):
        width = round(depth / top * room, 1)
        y = index * QUEUE_ROW_HEIGHT
        bars.append(
            {
                "queue": queue,
                "depth": depth,
                "x": QUEUE_LABEL_WIDTH,
                "y": y + 4,
                "width": max(width, 1) if depth else 0,
                "height": QUEUE_ROW_HEIGHT - 8,
                "text_y": y + QUEUE_ROW_HEIGHT / 2 + 4,
                "value_x": QUEUE_LABEL_WIDTH + width + 6,
            }
        )
    return {
        "bars": bars,
        "width": QUEUE_CHART_WIDTH,
        "height": max(len(bars), 1) * QUEUE_ROW_HEIGHT,
        "label_x": QUEUE_LABEL_WIDTH - 8,
        "summary": ", ".join(f"{bar['queue']}: {bar['depth']}" for bar in bars) or "no queues",
    }


def _minutes_ago(bucket: int) -> tuple[int, int]:
    """The (from, to) minutes ago that column `bucket` (0 = oldest) covers."""
    step = BUCKET_SECONDS // 60
    start = (BUCKETS - bucket) * step
    return start, start - step


def failure_chart(buckets: tuple[int, ...]) -> dict:
    columns = []
    bars = bar_geometry(
        buckets,
        width=FAILURE_CHART_WIDTH,
        base=FAILURE_CHART_BASE,
        headroom=FAILURE_CHART_BASE - 24,
        label_gap=5,
    )
    for index, bar in enumerate(bars):
        start, end = _minutes_ago(index)
        columns.append({**bar, "span": f"{start}-{end}", "when": f"{start} to {end} minutes ago"})
    return {
        "columns": columns,
        "width": FAILURE_CHART_WIDTH,
        "height": FAILURE_CHART_HEIGHT,
        "base": FAILURE_CHART_BASE,
        "summary": ", ".join(f"{c['when']}: {c['value']}" for c in columns),
    }


def duration_text(seconds: float) -> str:
    """3 s, 4 min 05 s, 2 h 07 min: an age an operator reads at a glance."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _live_context(live) -> dict:
    context = {
        "taken_at": datetime.fromtimestamp(live.taken_at, tz=UTC),
        "queues": queue_chart(live.queue_depths) if live.queue_depths is not None else None,
        "last_etl_dispatch": None,
        "backlog_read": live.backlog is not None,
        "workers_alive": live.workers_alive,
    }
    if live.last_etl_dispatch is not None:
        context["last_etl_dispatch"] = datetime.fromtimestamp(live.last_etl_dispatch, tz=UTC)
    if live.backlog is not None:
        context |= {
            "jobs_pending": live.jobs_pending,
            "oldest_pending_age": duration_text(live.oldest_pending_age_seconds),
            "jobs_on_dead_workers": live.jobs_on_dead_workers,
            "endpoints_disabled_total": live.endpoints_disabled,
        }
    return context


@require_safe
def operations_page(request):
    overview = operations_overview()
    failures = overview.failures
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "live": overview.live,
        **_live_context(overview.live),
        "failures": failures,
        "failure_charts": (
            [{"series": series, "chart": failure_chart(series.buckets)} for series in failures.series]
            if failures is not None
            else None
        ),
        "failure_kinds": [label for _, label in FAILURE_KINDS],
        "failures_by_organisation": (
            [
                {"org": org, "counts": [org.counts[kind] for kind, _ in FAILURE_KINDS]}
                for org in failures.by_organisation
            ]
            if failures is not None
            else None
        ),
        "etl_health": overview.etl_health,
        "endpoints_disabled": overview.endpoints_disabled,
        "endpoints_shown_at_most": DISABLED_ENDPOINTS_SHOWN,
        "read_errors": overview.errors,
    }
    return TemplateResponse(request, "admin/operations.html", context)
