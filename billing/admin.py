"""Operators grant credits and read an organisation's ledger from the admin. The ledger
lives in each organisation's schema, so both run inside that organisation's context."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html_join
from django_tenants.utils import tenant_context

from billing import selectors, services
from nexus.api.errors import AppError
from tenants.admin import OrganisationAdmin
from tenants.models import Organisation


class GrantCreditsForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=services.MAX_SINGLE_AMOUNT)
    reason = forms.CharField(max_length=255)


@admin.action(description="Grant credits to the selected organisations")
def grant_credits(modeladmin, request, queryset):
    if "apply" in request.POST:
        form = GrantCreditsForm(request.POST)
        if form.is_valid():
            for org in queryset:
                try:
                    with tenant_context(org):
                        row = services.credits_grant(
                            amount=form.cleaned_data["amount"],
                            reason=form.cleaned_data["reason"],
                            actor_label=f"operator:{request.user.email}",
                            actor_id=request.user.pk,
                        )
                except AppError as exc:
                    messages.error(request, f"{org.name}: {exc.message}")
                    continue
                messages.success(
                    request, f"{org.name}: granted {row.amount} credits, balance {row.balance_after}."
                )
            return None
    else:
        form = GrantCreditsForm()
    return TemplateResponse(
        request,
        "admin/billing/grant_credits.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Grant credits",
            "organisations": queryset,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        },
    )


class OrganisationWithCreditsAdmin(OrganisationAdmin):
    actions = [grant_credits]
    readonly_fields = [*OrganisationAdmin.readonly_fields, "credit_balance", "recent_credit_transactions"]
    fields = [*OrganisationAdmin.fields, "credit_balance", "recent_credit_transactions"]

    @admin.display(description="Credit balance")
    def credit_balance(self, obj) -> int | str:
        if obj is None or obj._state.adding:
            return "-"
        with tenant_context(obj):
            balance, reserved = selectors.credits_balances()
        return f"{balance} available, {reserved} reserved for audits" if reserved else balance

    @admin.display(description="Latest credit transactions")
    def recent_credit_transactions(self, obj):
        if obj is None or obj._state.adding:
            return "-"
        with tenant_context(obj):
            rows = selectors.credits_recent(limit=10)
        if not rows:
            return "none yet"
        return format_html_join(
            "\n",
            "<div>#{} {} {} → {}{} ({}, {}: {})</div>",
            (
                (
                    r.sequence,
                    r.created_at.strftime("%Y-%m-%d %H:%M"),
                    f"{r.amount:+d}",
                    r.balance_after,
                    _reserved_part(r),
                    r.kind,
                    r.actor_label,
                    r.reference,
                )
                for r in rows
            ),
        )


def _reserved_part(row) -> str:
    """The reserved balance's move and the audit, for the rows of an audit (escaped by
    format_html_join like every other part)."""
    if not row.audit_id:
        return ""
    return f", reserved {row.reserved_change:+d} → {row.reserved_after}, audit {row.audit_id}"


admin.site.unregister(Organisation)
admin.site.register(Organisation, OrganisationWithCreditsAdmin)
