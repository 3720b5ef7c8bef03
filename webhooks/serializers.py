from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from nexus.api.fields import PlainTextField
from webhooks.events import SUBSCRIBABLE_EVENTS
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import endpoint_health


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


class HealthOutput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["healthy", "failing", "disabled"],
        help_text="failing: the last WEBHOOK_FAILING_AFTER_FAILURES (3) deliveries or more all failed.",
    )
    failing_since = serializers.DateTimeField(
        allow_null=True, help_text="When the current run of failed deliveries began; null after a success."
    )
    consecutive_failures = serializers.IntegerField()
    last_error = serializers.CharField(help_text="The latest failed attempt's error (kept after a recovery).")
    last_success_at = serializers.DateTimeField(allow_null=True)


class EndpointOutput(serializers.ModelSerializer):
    health = serializers.SerializerMethodField()

    @extend_schema_field(HealthOutput)
    def get_health(self, endpoint: WebhookEndpoint) -> dict:
        return HealthOutput(endpoint_health(endpoint)).data

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
            "health",
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


@extend_schema_field({"type": "object", "additionalProperties": True})
class _JSONObjectField(serializers.JSONField):
    """A JSON object passed through as it is (a schema, an example body)."""


class EventTypeOutput(serializers.Serializer):
    name = serializers.CharField(help_text="The event type, as in a body's `type` and in `event_types`.")
    description = serializers.CharField()
    version = serializers.IntegerField(help_text="The version of the payload's shape; any change raises it.")
    subscribable = serializers.BooleanField(
        help_text="Whether an endpoint can subscribe to it (webhook.test is sent only on request)."
    )
    schema = _JSONObjectField(help_text="JSON Schema (draft 2020-12) of the body a receiver gets.")
    example = _JSONObjectField(help_text="An example body, valid against `schema`.")
