"""Operators see an organisation's webhook endpoints and deliveries, and redeliver, from the
organisation's admin page. The data lives in the organisation's schema."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django_tenants.utils import tenant_context

from nexus.api.errors import AppError
from tenants.models import Organisation
from webhooks import selectors, services
from webhooks.events import ALL_EVENTS
from webhooks.models import DeliveryStatus


def organisation_webhooks_view(request, org_id):
    org = get_object_or_404(Organisation, pk=org_id)
    if request.method == "POST":
        delivery_id = request.POST.get("delivery_id", "")
        with tenant_context(org):
            try:
                services.webhook_redeliver(delivery=selectors.delivery_get(delivery_id=delivery_id))
                messages.success(request, f"Delivery {delivery_id} queued again.")
            except AppError as exc:
                messages.error(request, exc.message)
        return redirect(request.get_full_path())
    # The same filters as GET /api/v1/webhooks/{id}/deliveries; unknown values are ignored.
    chosen = {
        "endpoint": request.GET.get("endpoint", ""),
        "status": request.GET.get("status", ""),
        "event_type": request.GET.get("event_type", ""),
    }
    with tenant_context(org):
        endpoints = list(selectors.endpoint_list())
        endpoint = next((e for e in endpoints if str(e.pk) == chosen["endpoint"]), None)
        deliveries = selectors.delivery_list(
            endpoint=endpoint,
            statuses=[chosen["status"]] if chosen["status"] in DeliveryStatus.values else None,
            event_types=[chosen["event_type"]] if chosen["event_type"] in ALL_EVENTS else None,
        ).order_by("-created_at")
        page = Paginator(deliveries, 50).get_page(request.GET.get("page"))
        page.object_list = list(page.object_list)
    query = urlencode({key: value for key, value in chosen.items() if value})
    return TemplateResponse(
        request,
        "admin/webhooks/organisation_webhooks.html",
        {
            **admin.site.each_context(request),
            "title": f"Webhooks of {org.name}",
            "organisation": org,
            "endpoints": endpoints,
            "page": page,
            "chosen": chosen,
            "query": query,
            "statuses": DeliveryStatus.values,
            "event_types": sorted(ALL_EVENTS),
            "opts": Organisation._meta,
        },
    )


def _extend_organisation_admin() -> None:
    """Adds the page and a link to it to the registered Organisation admin."""
    model_admin = admin.site._registry[Organisation]
    original_get_urls = model_admin.get_urls

    def get_urls():
        custom = [
            path(
                "<uuid:org_id>/webhooks/",
                admin.site.admin_view(organisation_webhooks_view),
                name="tenants_organisation_webhooks",
            )
        ]
        return custom + original_get_urls()

    @admin.display(description="Webhooks")
    def webhooks_link(obj):
        if obj is None or obj._state.adding:
            return "-"
        return format_html(
            '<a href="{}">Endpoints and deliveries</a>',
            reverse("admin:tenants_organisation_webhooks", args=[obj.pk]),
        )

    model_admin.get_urls = get_urls
    model_admin.webhooks_link = webhooks_link
    model_admin.readonly_fields = [*model_admin.readonly_fields, "webhooks_link"]
    model_admin.fields = [*model_admin.fields, "webhooks_link"]


_extend_organisation_admin()
