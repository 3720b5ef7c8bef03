from rest_framework import serializers

from billing.models import CreditTransaction, Purchase, PurchaseStatus
from billing.public.models import CreditPack


class CreditTransactionOutput(serializers.ModelSerializer):
    reason = serializers.CharField(source="reference")
    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = CreditTransaction
        fields = [
            "id",
            "sequence",
            "kind",
            "amount",
            "balance_after",
            "reserved_change",
            "reserved_after",
            "job_id",
            "audit_id",
            "reason",
            "actor",
            "created_at",
        ]


class CreditsOutput(serializers.Serializer):
    balance = serializers.IntegerField(help_text="Available credits: what jobs and new audits can spend.")
    reserved = serializers.IntegerField(
        help_text="Credits held by running audits: charged as their items are evaluated, the rest released."
    )
    recent_transactions = CreditTransactionOutput(many=True)


class CreditPackOutput(serializers.ModelSerializer):
    price = serializers.SerializerMethodField(help_text="Price in major units, e.g. 10.00.")

    class Meta:
        model = CreditPack
        fields = ["id", "name", "credits", "price_cents", "price", "currency"]

    def get_price(self, pack) -> str:
        return f"{pack.price_cents / 100:.2f}"


class PurchaseOutput(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=PurchaseStatus.choices)

    class Meta:
        model = Purchase
        fields = [
            "id",
            "pack_id",
            "pack_name",
            "credits",
            "amount_cents",
            "currency",
            "status",
            "checkout_url",
            "credits_reversed",
            "refund_shortfall",
            "created_at",
            "completed_at",
            "expired_at",
            "refunded_at",
        ]


class CheckoutInput(serializers.Serializer):
    pack = serializers.UUIDField()
