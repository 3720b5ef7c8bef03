"""Read-only credit endpoints for members. Nothing here can add credits."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from billing import selectors
from billing.models import PurchaseStatus, TransactionKind
from billing.serializers import (
    CheckoutInput,
    CreditPackOutput,
    CreditsOutput,
    CreditTransactionOutput,
    PurchaseOutput,
)
from billing.services.purchases import checkout_start
from nexus.api.pagination import paginated
from nexus.api.permissions import IsOrganisationAdmin
from nexus.api.query import (
    apply_sort,
    date_parameter,
    date_range,
    multi_value,
    multi_value_parameter,
    sort_parameter,
)
from nexus.api.views import OrganisationEndpoint
from nexus.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from nexus.schema import COMPLETE_LIST, error_statuses


class CreditsView(OrganisationEndpoint):
    key_scopes = {"GET": "billing:read"}

    @extend_schema(
        summary="Credit balance (available and reserved) and the 10 latest transactions",
        responses={200: CreditsOutput},
        tags=["credits"],
    )
    def get(self, request, *args, **kwargs):
        balance, reserved = selectors.credits_balances()
        return Response(
            CreditsOutput(
                {
                    "balance": balance,
                    "reserved": reserved,
                    "recent_transactions": selectors.credits_recent(limit=10),
                }
            ).data
        )


class CreditTransactionListView(OrganisationEndpoint):
    key_scopes = {"GET": "billing:read"}

    @extend_schema(
        summary="The credit ledger",
        parameters=[
            multi_value_parameter("kind", allowed=set(TransactionKind.values)),
            date_parameter("from", "ISO date or date-time, inclusive"),
            date_parameter("to", "ISO date or date-time, inclusive; not before `from`"),
            sort_parameter(allowed={"sequence", "created_at", "amount"}, default="-sequence"),
        ],
        responses={200: CreditTransactionOutput(many=True)},
        tags=["credits"],
    )
    def get(self, request, *args, **kwargs):
        rows = selectors.credits_transactions(
            kinds=multi_value(request, "kind", allowed=set(TransactionKind.values))
        )
        rows = date_range(rows, request, field="created_at")
        # The ledger's own order is its sequence (created_at ties within a transaction).
        rows = apply_sort(rows, request, allowed={"sequence", "created_at", "amount"}, default="-sequence")
        return paginated(request, rows, CreditTransactionOutput)


class CreditPackListView(OrganisationEndpoint):
    key_scopes = {"GET": "billing:read"}

    @extend_schema(
        summary="Credit packs on sale",
        responses={200: CreditPackOutput(many=True)},
        tags=["billing"],
        extensions=COMPLETE_LIST,
    )
    def get(self, request, *args, **kwargs):
        return Response(CreditPackOutput(selectors.credit_packs_on_sale(), many=True).data)


class CheckoutView(OrganisationEndpoint):
    key_scopes = {"POST": "billing:write"}
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Buy a credit pack: start a Stripe Checkout (admins)",
        description=(
            "Returns the purchase and the Stripe Checkout URL to send the buyer to. Credits are "
            "added when Stripe confirms the payment. 503 BILLING_UNAVAILABLE when this server has "
            "no Stripe keys."
        ),
        request=CheckoutInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: PurchaseOutput},
        tags=["billing"],
        extensions=error_statuses({502: "PAYMENT_PROVIDER_ERROR: Stripe refused or failed the request."}),
    )
    @idempotent
    def post(self, request, *args, **kwargs):
        payload = CheckoutInput(data=request.data)
        payload.is_valid(raise_exception=True)
        purchase = checkout_start(
            user=request.user, pack_id=payload.validated_data["pack"], org_id=self.organisation.id
        )
        return Response(PurchaseOutput(purchase).data, status=status.HTTP_201_CREATED)


class PurchaseListView(OrganisationEndpoint):
    key_scopes = {"GET": "billing:read"}

    @extend_schema(
        summary="Purchases of credit packs, newest first",
        parameters=[
            multi_value_parameter("status", allowed=set(PurchaseStatus.values)),
            sort_parameter(allowed={"created_at", "amount_cents"}, default="-created_at"),
        ],
        responses={200: PurchaseOutput(many=True)},
        tags=["billing"],
    )
    def get(self, request, *args, **kwargs):
        statuses = multi_value(request, "status", allowed=set(PurchaseStatus.values))
        rows = selectors.purchase_list(statuses=statuses)
        rows = apply_sort(rows, request, allowed={"created_at", "amount_cents"}, default="-created_at")
        return paginated(request, rows, PurchaseOutput)
