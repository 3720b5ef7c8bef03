"""Billing pages: the balance fragment the dashboard refreshes, and the billing page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from billing import selectors
from billing.services.purchases import billing_configured, checkout_start
from nexus.api.errors import AppError
from nexus.pages import org_page, page_context


def balance_context() -> dict:
    balance, reserved = selectors.credits_balances()
    return {
        "balance": balance,
        "reserved": reserved,
        "as_of": timezone.localtime().strftime("%H:%M:%S"),
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
    }


@org_page
def balance_partial(request):
    return render(request, "billing/_balance.html", balance_context())


@org_page
def billing_page(request):
    return render(
        request,
        "billing/billing.html",
        page_context(
            request,
            nav="billing",
            configured=billing_configured(),
            packs=selectors.credit_packs_on_sale(),
            purchases=selectors.purchases_recent(limit=50),
            **balance_context(),
        ),
    )


@require_POST
@org_page(admin=True)
def buy(request):
    try:
        purchase = checkout_start(
            user=request.user, pack_id=request.POST.get("pack", ""), org_id=request.tenant.id
        )
    except AppError as exc:
        messages.error(request, exc.message)
        return redirect("/billing")
    return redirect(purchase.checkout_url)
