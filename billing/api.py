"""Read-only credit endpoints for members. Nothing here can add credits."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors
from billing.models import TransactionKind
from billing.serializers import CreditsOutput, CreditTransactionOutput
from nexus.api.pagination import PagePagination
from nexus.api.query import apply_sort, date_range, multi_value


class CreditsView(APIView):
    @extend_schema(
        summary="Credit balance and the 10 latest transactions",
        responses={200: CreditsOutput},
        tags=["credits"],
    )
    def get(self, request, *args, **kwargs):
        return Response(
            CreditsOutput(
                {
                    "balance": selectors.credits_balance(),
                    "recent_transactions": selectors.credits_recent(limit=10),
                }
            ).data
        )


class CreditTransactionListView(APIView):
    @extend_schema(
        summary="The credit ledger",
        parameters=[
            OpenApiParameter(
                "kind", str, description="grant, purchase, deduction, refund, adjustment (comma separated)"
            ),
            OpenApiParameter("from", str, description="ISO date or date-time, inclusive"),
            OpenApiParameter("to", str, description="ISO date or date-time, inclusive"),
            OpenApiParameter(
                "sort",
                str,
                description="sequence, created_at or amount; '-' for descending (default -sequence)",
            ),
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
        paginator = PagePagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(CreditTransactionOutput(page, many=True).data)
