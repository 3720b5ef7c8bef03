"""Audit pages: the organisation's audits and the form that starts one, an audit's progress
(refreshed by HTMX while it runs), pause / resume / cancel, its flagged items and its
results. Every change goes through the services the API uses; nothing here decides what is
valid or what an audit costs."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audits import csv_export, selectors, services, uploads
from audits.forms import AuditForm, form_defaults
from audits.inputs import InputError
from audits.models import FINISHED_STATUSES, Audit, AuditStatus
from billing.selectors import credits_balances
from nexus.api.errors import AppError, PayloadTooLarge, PaymentRequired, ValidationFailed
from nexus.middleware import drain_after
from nexus.pages import confirmation_page, confirmed, is_htmx, org_page, page_context
from tenants.models import Role

AUDITS_PER_PAGE = 20
ITEMS_PER_PAGE = 25
ACTIVE = (AuditStatus.QUEUED, AuditStatus.RUNNING)
# Seconds between two refreshes of the progress: while batches run, and while paused (the
# batches in flight still commit, and the audit may be resumed through the API).
POLL_ACTIVE_SECONDS = 2
POLL_PAUSED_SECONDS = 10
ACTIONS = {"pause": services.audit_pause, "resume": services.audit_resume, "cancel": services.audit_cancel}
ITEM_VIEWS = {"flagged": "Flagged", "failed": "Failed"}


# --- Numbers as the pages say them ----------------------------------------------------------------


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def _percent(value: float) -> str:
    """45.5 as "45.5", 100.0 as "100": for the text and for aria-valuenow alike."""
    return f"{value:.1f}".removesuffix(".0")


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


# --- The list and the form -----------------------------------------------------------------------


def _price_context() -> dict:
    balance, reserved = credits_balances()
    price = settings.AUDIT_PRICE_PER_ITEM
    return {
        "price": price,
        "balance": balance,
        "reserved": reserved,
        "affordable": balance // price if price else None,
        "max_items_text": f"{settings.AUDIT_MAX_ITEMS:,}",
        "max_bytes": settings.AUDIT_MAX_UPLOAD_BYTES,
        "max_upload_text": _size(settings.AUDIT_MAX_UPLOAD_BYTES),
    }


def _audits_page(
    request,
    *,
    form: AuditForm | None = None,
    error: str = "",
    file_error: str = "",
    billing_link=False,
    status=200,
):
    audits = Paginator(selectors.audit_list(), AUDITS_PER_PAGE).get_page(request.GET.get("page"))
    for audit in audits:
        audit.percent = _percent(selectors.audit_progress(audit).percent)
    return render(
        request,
        "audits/audits.html",
        page_context(
            request,
            nav="audits",
            audits=audits,
            form=form or AuditForm(),
            error=error,
            # A refused upload's body was not read to the end: no bound form to attach it to.
            file_errors=[file_error] if file_error else (form.errors.get("file", []) if form else []),
            billing_link=billing_link,
            **_price_context(),
            **form_defaults(),
        ),
        status=status,
    )


@csrf_exempt  # checked in _audit_start, once the bounded upload handlers are in place
@require_http_methods(["GET", "POST"])
def audits_page(request):
    """GET: the audits and the form. POST: start an audit from the uploaded file (any member,
    as POST /api/v1/audits), then its page. The CSRF check reads the form, and so the body:
    the size-counting handler must be installed before it, hence it is checked inside."""
    if request.method == "GET":
        return _audits_list(request)
    uploads.install_upload_handlers(request)
    try:
        return _audit_start(request)
    except PayloadTooLarge as exc:
        # Raised while the body was read, before CSRF could be checked: nothing was done.
        response = _too_large_page(request, exc)
        drain_after(response, request, settings.API_BODY_DRAIN_BYTES)
        return response


@org_page
def _audits_list(request):
    return _audits_page(request)


@org_page
def _too_large_page(request, exc: PayloadTooLarge):
    return _audits_page(
        request,
        file_error=f"{exc.message} Choose a smaller file, or split it into several audits.",
        status=413,
    )


@org_page  # before the CSRF check: a signed-out caller's body is never read
@csrf_protect
def _audit_start(request):
    form = AuditForm(request.POST, request.FILES)
    options = form.service_options() if form.is_valid() else None
    if options is None:
        return _audits_page(request, form=form, status=422)
    upload = form.cleaned_data["file"]
    try:
        items = uploads.parse_upload(
            upload,
            skip_retweets=form.cleaned_data["skip_retweets"],
            skip_replies=form.cleaned_data["skip_replies"],
        )
        audit = services.audit_create(
            user=request.user,
            input_kind=items.input_kind,
            input_name=uploads.input_name(upload.name),
            items=items,
            options=options,
        )
    except InputError as exc:  # TooManyItems too; the message names the line or the item
        form.add_error("file", exc.message)
        return _audits_page(request, form=form, status=422)
    except PaymentRequired as exc:
        return _audits_page(
            request, form=form, error=_short_balance(exc), billing_link=True, status=exc.status_code
        )
    except ValidationFailed as exc:  # an input without items
        fields = exc.details.get("fields") or {}
        for name, problems in fields.items():
            form.add_error(name if name in form.fields else None, " ".join(problems))
        return _audits_page(request, form=form, error="" if fields else exc.message, status=exc.status_code)
    except AppError as exc:
        return _audits_page(request, form=form, error=exc.message, status=exc.status_code)
    finally:
        upload.close()
    messages.success(
        request,
        f"Audit started: {audit.total:,} items, {audit.credits_reserved:,} credits reserved"
        + (f" ({audit.skipped_input:,} retweets or replies left out)." if audit.skipped_input else "."),
    )
    return redirect(f"/audits/{audit.pk}")


def _short_balance(exc: PaymentRequired) -> str:
    details = exc.details
    price, items = details.get("price_per_item"), details.get("items")
    if not all(
        isinstance(details.get(name), int) for name in ("required", "balance", "price_per_item", "items")
    ):
        return exc.message
    return (
        f"Not enough credits: this file holds {items:,} items to evaluate, which at "
        f"{price:,} credit{'s' if price != 1 else ''} each need {details['required']:,} credits, and the "
        f"available balance is {details['balance']:,}. Nothing was charged."
    )


# --- One audit --------------------------------------------------------------------------------------


def may_control(user, audit: Audit) -> bool:
    """Pause, resume and cancel: an admin, or the person who started the audit."""
    return user.role == Role.ADMIN or (audit.created_by_id is not None and audit.created_by_id == user.pk)


def _items_shown(request) -> tuple[str, str | None]:
    """Which items the page lists (?items=flagged|failed) and which page of them."""
    view = request.GET.get("items", "flagged")
    return (view if view in ITEM_VIEWS else "flagged"), request.GET.get("page")


def _audit_context(request, audit: Audit, *, view: str = "flagged", page=None) -> dict:
    """What the progress, the controls and the items of an audit's page are drawn from."""
    progress = selectors.audit_progress(audit)
    poll_seconds = None
    if audit.status in ACTIVE:
        poll_seconds = POLL_ACTIVE_SECONDS
    elif audit.status == AuditStatus.PAUSED:
        poll_seconds = POLL_PAUSED_SECONDS
    items_query = selectors.item_list(
        audit=audit, flagged=True if view == "flagged" else None, failed=True if view == "failed" else None
    )
    items = Paginator(items_query, ITEMS_PER_PAGE).get_page(page)
    query = urlencode(
        {
            "shown": audit.status,
            "flagged": audit.flagged,
            "failed": audit.failed,
            "items": view,
            "page": items.number,
        }
    )
    return {
        "audit": audit,
        "progress": progress,
        "percent": _percent(progress.percent),
        "eta": _duration(progress.eta_seconds),
        "finished": audit.status in FINISHED_STATUSES,
        "poll_seconds": poll_seconds,
        "poll_url": f"/audits/{audit.pk}/progress?{query}",
        "can_control": may_control(request.user, audit),
        "items": items,
        "item_view": view,
        "item_view_label": ITEM_VIEWS[view],
        "item_views": ITEM_VIEWS,
        "item_query": urlencode({"items": view, "page": items.number}),
    }


@require_GET
@org_page
def audit_page(request, audit_id):
    audit = selectors.audit_get(audit_id=audit_id)  # another organisation's: 404 (org_page)
    view, page = _items_shown(request)
    return render(
        request,
        "audits/audit.html",
        page_context(request, nav="audits", **_audit_context(request, audit, view=view, page=page)),
    )


@require_GET
@org_page
def audit_progress_partial(request, audit_id):
    """The progress, polled by the audit's page. The controls and the announcement come with
    it when the status is not the one the page shows; the items when their counts moved."""
    audit = selectors.audit_get(audit_id=audit_id)
    view, page = _items_shown(request)
    status_changed = request.GET.get("shown") != audit.status
    counts_changed = request.GET.get("flagged") != str(audit.flagged) or request.GET.get("failed") != str(
        audit.failed
    )
    return render(
        request,
        "audits/_progress_response.html",
        {
            **_audit_context(request, audit, view=view, page=page),
            "with_controls": status_changed,
            "with_items": status_changed or counts_changed,
        },
    )


_NOTICES = {
    "pause": "Paused. Batches already sent finish; nothing more is evaluated until it is resumed.",
    "resume": "Resumed.",
    "cancel": "Cancelled. The items not evaluated were cancelled and their credits released.",
}


@require_POST
@org_page
def audit_action(request, audit_id):
    """Pause, resume or cancel (an admin or the person who started it), through the same
    services as POST /api/v1/audits/{id}/pause|resume|cancel. With HTMX the controls and the
    progress are answered in place, a refusal (409 included) as a message among them; without,
    back to the audit's page with a message. Cancelling asks first."""
    audit = selectors.audit_get(audit_id=audit_id)  # before anything else: 404 for every action
    action = request.POST.get("action", "")
    problem = notice = ""
    if action not in ACTIONS:
        problem = "Choose pause, resume or cancel."
    elif not may_control(request.user, audit):
        problem = f"Only an admin or the person who started this audit can {action} it."
    elif action == "cancel" and not confirmed(request, "cancel"):
        return confirmation_page(
            request,
            title="Cancel the audit",
            question=(
                f"Cancel the audit of {audit.input_name or audit.get_input_kind_display()}? The items not "
                "evaluated yet are cancelled and their credits released. This cannot be undone."
            ),
            action="cancel",
            button="Yes, cancel the audit",
            cancel_url=f"/audits/{audit.pk}",
        )
    else:
        try:
            audit = ACTIONS[action](audit_id=audit.pk)
            notice = _NOTICES[action]
        except AppError as exc:  # Conflict: the status does not allow it (resume a completed audit)
            problem = exc.message
    if not is_htmx(request):
        if problem:
            messages.error(request, problem)
        else:
            messages.success(request, notice)
        return redirect(f"/audits/{audit.pk}")
    audit.refresh_from_db()
    view, page = _items_shown(request)
    # 200 for a refusal too: HTMX swaps it in, and the message is read out where the buttons are.
    return render(
        request,
        "audits/_action_response.html",
        {**_audit_context(request, audit, view=view, page=page), "problem": problem, "notice": notice},
    )


@require_GET
@org_page
def audit_results_csv(request, audit_id):
    """The results as CSV, as GET /api/v1/audits/{id}/results.csv writes them (the same
    builder), for a signed-in person: the flagged items, or with ?all=true every evaluated
    item. Streamed: the items are read in chunks while the response is sent."""
    audit = selectors.audit_get(audit_id=audit_id)
    response = StreamingHttpResponse(
        csv_export.results_csv(request.tenant, audit, everything=request.GET.get("all") == "true"),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{csv_export.file_name(audit)}"'
    return response
