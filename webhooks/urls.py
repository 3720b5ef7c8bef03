from django.urls import path

from webhooks import api

urlpatterns = [
    path("webhooks", api.EndpointListView.as_view(), name="webhooks"),
    path("webhooks/event-types", api.EventTypeListView.as_view(), name="webhook-event-types"),
    path(
        "webhooks/deliveries/<str:delivery_id>/redeliver",
        api.RedeliverView.as_view(),
        name="webhook-redeliver",
    ),
    path("webhooks/<uuid:endpoint_id>", api.EndpointDetailView.as_view(), name="webhook"),
    path("webhooks/<uuid:endpoint_id>/rotate-secret", api.RotateSecretView.as_view(), name="webhook-rotate"),
    path("webhooks/<uuid:endpoint_id>/test", api.TestEventView.as_view(), name="webhook-test"),
    path("webhooks/<uuid:endpoint_id>/deliveries", api.DeliveryListView.as_view(), name="webhook-deliveries"),
]
