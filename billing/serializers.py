from rest_framework import serializers

from billing.models import CreditTransaction


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
            "job_id",
            "reason",
            "actor",
            "created_at",
        ]


class CreditsOutput(serializers.Serializer):
    balance = serializers.IntegerField()
    recent_transactions = CreditTransactionOutput(many=True)
