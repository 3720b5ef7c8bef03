"""Webhook endpoints: admins manage them, members read them and their deliveries."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from nexus.api.pagination import paginated
from nexus.api.permissions import AdminForWrites, IsOrganisationAdmin
from nexus.api.query import apply_sort, multi_value, multi_value_parameter, sort_parameter
from nexus.api.views import OrganisationEndpoint
from nexus.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from nexus.schema import COMPLETE_LIST
from webhooks import selectors, services
from webhooks.events import ALL_EVENTS
from webhooks.models import DeliveryStatus
from webhooks.serializers import (
    DeliveryOutput,
    EndpointInput,
    EndpointOutput,
    EndpointPatchInput,
    EndpointWithSecretOutput,
    EventTypeOutput,
    SecretOutput,
)

TAGS = ["webhooks"]


def _with_secret(endpoint, secret: str) -> dict:
    endpoint.secret = secret
    return EndpointWithSecretOutput(endpoint).data


class EndpointListView(OrganisationEndpoint):
    key_scopes = {"GET": "webhooks:read", "POST": "webhooks:write"}
    permission_classes = [AdminForWrites]

    @extend_schema(summary="Webhook endpoints", responses={200: EndpointOutput(many=True)}, tags=TAGS)
    def get(self, request, *args, **kwargs):
        return paginated(request, selectors.endpoint_list().order_by("created_at", "pk"), EndpointOutput)

    @extend_schema(
        summary="Register a webhook endpoint (admins)",
        description="The response carries the signing secret; it is not shown again.",
        request=EndpointInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: EndpointWithSecretOutput},
        tags=TAGS,
    )
    @idempotent(secret_fields=("secret",))
    def post(self, request, *args, **kwargs):
        payload = EndpointInput(data=request.data)
        payload.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_endpoint_create(**payload.validated_data)
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class EventTypeListView(OrganisationEndpoint):
    key_scopes = {"GET": "webhooks:read"}

    @extend_schema(
        summary="Webhook event types: each payload's version, JSON Schema and an example",
        description="The same catalogue for every organisation, returned whole (no pagination).",
        responses={200: EventTypeOutput(many=True)},
        tags=TAGS,
        extensions=COMPLETE_LIST,
    )
    def get(self, request, *args, **kwargs):
        return Response(EventTypeOutput(selectors.event_type_list(), many=True).data)


class EndpointDetailView(OrganisationEndpoint):
    key_scopes = {
        "GET": "webhooks:read",
        "PUT": "webhooks:write",
        "PATCH": "webhooks:write",
        "DELETE": "webhooks:write",
    }
    permission_classes = [AdminForWrites]

    @extend_schema(summary="One webhook endpoint", responses={200: EndpointOutput}, tags=TAGS)
    def get(self, request, endpoint_id, *args, **kwargs):
        return Response(EndpointOutput(selectors.endpoint_get(endpoint_id=endpoint_id)).data)

    @extend_schema(
        summary="Change a webhook endpoint (admins)",
        description="Setting active=true re-enables a disabled endpoint and resets its failure count.",
        request=EndpointPatchInput,
        responses={200: EndpointOutput},
        tags=TAGS,
    )
    def patch(self, request, endpoint_id, *args, **kwargs):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        payload = EndpointPatchInput(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(endpoint=endpoint, **payload.validated_data)
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(
        summary="Delete a webhook endpoint and its delivery log (admins)",
        responses={204: OpenApiResponse(description="Deleted")},
        tags=TAGS,
    )
    def delete(self, request, endpoint_id, *args, **kwargs):
        services.webhook_endpoint_delete(endpoint=selectors.endpoint_get(endpoint_id=endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RotateSecretView(OrganisationEndpoint):
    key_scopes = {"POST": "webhooks:write"}
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Rotate the signing secret (admins)",
        description="For 24 hours deliveries are signed with both the new and the old secret.",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: SecretOutput},
        tags=TAGS,
    )
    @idempotent(secret_fields=("secret",))
    def post(self, request, endpoint_id, *args, **kwargs):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        secret = services.webhook_secret_rotate(endpoint=endpoint)
        return Response(
            SecretOutput(
                {"secret": secret, "previous_secret_expires_at": endpoint.previous_secret_expires_at}
            ).data
        )


class TestEventView(OrganisationEndpoint):
    key_scopes = {"POST": "webhooks:write"}
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Send a webhook.test event now (admins)",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: DeliveryOutput},
        tags=TAGS,
    )
    @idempotent
    def post(self, request, endpoint_id, *args, **kwargs):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        delivery = services.webhook_send_test(endpoint=endpoint)
        return Response(DeliveryOutput(selectors.delivery_get(delivery_id=delivery.pk)).data, status=202)


class DeliveryListView(OrganisationEndpoint):
    key_scopes = {"GET": "webhooks:read"}

    @extend_schema(
        summary="Deliveries of an endpoint, newest first, with their attempts",
        parameters=[
            multi_value_parameter("status", allowed=set(DeliveryStatus.values)),
            multi_value_parameter("event_type", allowed=ALL_EVENTS),
            sort_parameter(allowed={"created_at"}, default="-created_at"),
        ],
        responses={200: DeliveryOutput(many=True)},
        tags=TAGS,
    )
    def get(self, request, endpoint_id, *args, **kwargs):
        endpoint = selectors.endpoint_get(endpoint_id=endpoint_id)
        deliveries = selectors.delivery_list(
            endpoint=endpoint,
            statuses=multi_value(request, "status", allowed=set(DeliveryStatus.values)),
            event_types=multi_value(request, "event_type", allowed=ALL_EVENTS),
        )
        deliveries = apply_sort(deliveries, request, allowed={"created_at"}, default="-created_at")
        return paginated(request, deliveries, DeliveryOutput)


class RedeliverView(OrganisationEndpoint):
    key_scopes = {"POST": "webhooks:write"}
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Send a delivery again, with the same webhook-id (admins)",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: DeliveryOutput},
        tags=TAGS,
    )
    @idempotent
    def post(self, request, delivery_id, *args, **kwargs):
        delivery = services.webhook_redeliver(delivery=selectors.delivery_get(delivery_id=delivery_id))
        return Response(DeliveryOutput(selectors.delivery_get(delivery_id=delivery.pk)).data, status=202)
