from rest_framework import serializers

from nexus.api.fields import PlainTextField
from webhooks.events import SUBSCRIBABLE_EVENTS
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointInput(serializers.Serializer):
    url = serializers.CharField(max_length=2048)
    description = PlainTextField(max_length=255, required=False, allow_blank=True, default="")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(SUBSCRIBABLE_EVENTS)), allow_empty=False
    )
    active = serializers.BooleanField(required=False, default=True)


class EndpointPatchInput(serializers.Serializer):
    url = serializers.CharField(max_length=2048, required=False)
    description = PlainTextField(max_length=255, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(SUBSCRIBABLE_EVENTS)), allow_empty=False, required=False
    )
    active = serializers.BooleanField(required=False)


class EndpointOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "active",
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]


class EndpointWithSecretOutput(EndpointOutput):
    secret = serializers.CharField(help_text="Shown only now. Store it to verify signatures.")

    class Meta(EndpointOutput.Meta):
        fields = [*EndpointOutput.Meta.fields, "secret"]


class SecretOutput(serializers.Serializer):
    secret = serializers.CharField()
    previous_secret_expires_at = serializers.DateTimeField()


class AttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "status_code",
            "succeeded",
            "error",
            "response_excerpt",
        ]


class DeliveryOutput(serializers.ModelSerializer):
    endpoint_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = AttemptOutput(many=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint_id",
            "event_type",
            "status",
            "attempt_count",
            "next_attempt_at",
            "created_at",
            "completed_at",
            "payload",
            "attempts",
        ]
