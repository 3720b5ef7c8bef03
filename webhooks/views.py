"""Webhook pages: endpoints with their health, registration (secret shown once), rotation,
tests, deliveries, dismissing a dashboard notice, and the event catalogue with examples."""

from __future__ import annotations

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from nexus.api.errors import AppError
from nexus.pages import confirmation_page, confirmed, org_page, page_context
from webhooks import selectors, services
from webhooks.events import SUBSCRIBABLE_EVENTS


def _with_health(endpoint):
    endpoint.health = selectors.endpoint_health(endpoint)
    return endpoint


@org_page
def webhooks_page(request):
    return render(
        request,
        "webhooks/webhooks.html",
        page_context(
            request,
            nav="webhooks",
            endpoints=[_with_health(e) for e in selectors.endpoint_list()],
            events=SUBSCRIBABLE_EVENTS,
            event_types=[
                {"event": event, "example": json.dumps(event.example, indent=2)}
                for event in selectors.event_type_list()
            ],
            secret=request.session.pop("webhook_secret", None),
        ),
    )


@require_POST
@org_page(admin=True)
def webhook_create(request):
    try:
        _endpoint, secret = services.webhook_endpoint_create(
            url=request.POST.get("url", ""),
            event_types=request.POST.getlist("event_types"),
            description=request.POST.get("description", ""),
        )
    except AppError as exc:
        messages.error(request, exc.message)
        return redirect("/webhooks")
    # Shown once, on the next page load, then gone from the session.
    request.session["webhook_secret"] = secret
    messages.success(request, "Endpoint registered. Copy its signing secret now: it is not shown again.")
    return redirect("/webhooks")


@require_POST
@org_page(admin=True)
def webhook_action(request, endpoint_id):
    endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
    action = request.POST.get("action")
    if action == "delete" and not confirmed(request, "delete"):
        return confirmation_page(
            request,
            title="Delete a webhook endpoint",
            question=f"Delete the endpoint {endpoint.url} and its delivery log? This cannot be undone.",
            action="delete",
            button="Delete endpoint",
            cancel_url="/webhooks",
        )
    try:
        if action == "rotate":
            request.session["webhook_secret"] = services.webhook_secret_rotate(endpoint=endpoint)
            messages.success(request, "New secret below; the old one keeps working for 24 hours.")
        elif action == "test":
            services.webhook_send_test(endpoint=endpoint)
            messages.success(request, "Test event queued; see its delivery below.")
            return redirect(f"/webhooks/{endpoint.pk}")
        elif action == "enable":
            services.webhook_endpoint_update(endpoint=endpoint, active=True)
            messages.success(request, "Endpoint enabled.")
        elif action == "disable":
            services.webhook_endpoint_update(endpoint=endpoint, active=False)
            messages.success(request, "Endpoint disabled.")
        elif action == "delete":
            services.webhook_endpoint_delete(endpoint=endpoint)
            messages.success(request, "Endpoint deleted.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect("/webhooks")


@org_page
def webhook_deliveries_page(request, endpoint_id):
    endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
    return render(
        request,
        "webhooks/deliveries.html",
        page_context(
            request,
            nav="webhooks",
            endpoint=_with_health(endpoint),
            deliveries=selectors.delivery_list(endpoint=endpoint).order_by("-created_at")[:50],
        ),
    )


@require_POST
@org_page(admin=True)
def webhook_redeliver(request, delivery_id):
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    try:
        services.webhook_redeliver(delivery=delivery)
        messages.success(request, "Delivery queued again.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect(f"/webhooks/{delivery.endpoint_id}")


@require_POST
@org_page(admin=True)
def webhook_notice_dismiss(request, notice_id):
    notice = selectors.notice_get(notice_id=notice_id)
    services.webhook_notice_dismiss(notice=notice, user=request.user)
    messages.success(request, "Notice dismissed.")
    return redirect("/")
