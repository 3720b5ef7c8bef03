"""Team access endpoints (docs/specs/team-access.md): organisation settings, leaving, API
keys, invitations and the audit log. Admins only, and never API keys (these views name no
key scopes): a leaked key cannot mint another key, invite its holder or read who did what.
Views are thin: validate, call one service or selector, serialize."""

from __future__ import annotations

import re

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from auditlog.actions import FILTERS as ACTION_FILTERS
from auditlog.csv_export import audit_log_download
from auditlog.selectors import audit_events
from nexus.api.errors import field_error
from nexus.api.pagination import paginated
from nexus.api.permissions import IsOrganisationAdmin
from nexus.api.query import date_parameter, date_range, multi_value, multi_value_parameter
from nexus.api.renderers import CsvDownloadMixin
from nexus.api.views import OrganisationEndpoint
from nexus.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from tenants import services
from tenants.serializers import (
    ApiKeyCreatedOutput,
    ApiKeyInput,
    ApiKeyOutput,
    AuditEventOutput,
    InvitationInput,
    InvitationOutput,
)
from tenants.services import invitations, keys

INVITATION_STATUSES = {"pending", "accepted", "revoked", "expired"}


class LeaveView(OrganisationEndpoint):
    @extend_schema(
        summary="Leave the organisation",
        description=(
            "The caller stops being a member: every token and session of theirs ends and the API keys "
            "they created are revoked. The last admin of an organisation with other members is refused "
            "(409): make someone else an admin first. Afterwards an invitation to another organisation "
            "can be accepted."
        ),
        request=None,
        responses={204: OpenApiResponse(description="Left")},
        tags=["organisation"],
    )
    def post(self, request, *args, **kwargs):
        services.member_leave(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyListView(OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="The organisation's API keys (admins)",
        responses={200: ApiKeyOutput(many=True)},
        tags=["api-keys"],
    )
    def get(self, request, *args, **kwargs):
        return paginated(request, keys.api_key_list(org=self.organisation), ApiKeyOutput)

    @extend_schema(
        summary="Create an API key (admins)",
        description=(
            "The answer's `key` (`nx_live_...`) is the secret: it is shown this once and only its hash is "
            "kept. Send it as `Authorization: Bearer nx_live_...`. Scopes: "
            + ", ".join(f"`{scope}`" for scope in sorted(keys.SCOPES))
            + f". `expires_at` at most {settings.API_KEY_MAX_DAYS} days ahead; none: no expiry."
        ),
        request=ApiKeyInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ApiKeyCreatedOutput},
        tags=["api-keys"],
    )
    @idempotent(secret_fields=("key",))
    def post(self, request, *args, **kwargs):
        payload = ApiKeyInput(data=request.data)
        payload.is_valid(raise_exception=True)
        key, secret = keys.api_key_create(
            org=self.organisation,
            created_by=request.user,
            name=payload.validated_data["name"],
            scopes=payload.validated_data["scopes"],
            expires_at=payload.validated_data.get("expires_at"),
        )
        key.key = secret
        # The secret is in this answer only: no cache of any kind may keep it.
        return Response(
            ApiKeyCreatedOutput(key).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class ApiKeyDetailView(OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Revoke an API key (admins)",
        description="Takes effect at once: the next request with the key is a 401. Revoking twice is "
        "not an error.",
        responses={204: OpenApiResponse(description="Revoked")},
        tags=["api-keys"],
    )
    def delete(self, request, key_id, *args, **kwargs):
        keys.api_key_revoke(org=self.organisation, key_id=key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="The organisation's invitations (admins)",
        parameters=[
            multi_value_parameter("status", allowed=INVITATION_STATUSES, description="Default: every one.")
        ],
        responses={200: InvitationOutput(many=True)},
        tags=["invitations"],
    )
    def get(self, request, *args, **kwargs):
        statuses = multi_value(request, "status", allowed=INVITATION_STATUSES)
        return paginated(
            request, invitations.invitation_list(org=self.organisation, statuses=statuses), InvitationOutput
        )

    @extend_schema(
        summary="Invite someone by email (admins)",
        description=(
            f"Any address, free mail included. The email holds a signed link that works once, for "
            f"{settings.INVITATION_TTL_DAYS} days. 409 when the address is already a member or invited."
        ),
        request=InvitationInput,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: InvitationOutput},
        tags=["invitations"],
    )
    @idempotent
    def post(self, request, *args, **kwargs):
        payload = InvitationInput(data=request.data)
        payload.is_valid(raise_exception=True)
        invitation = invitations.invitation_create(
            org=self.organisation, invited_by=request.user, **payload.validated_data
        )
        return Response(InvitationOutput(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Revoke an invitation (admins)",
        description="Its link stops working at once. 409 if it was already accepted or revoked.",
        responses={204: OpenApiResponse(description="Revoked")},
        tags=["invitations"],
    )
    def delete(self, request, invitation_id, *args, **kwargs):
        invitations.invitation_revoke(org=self.organisation, invitation_id=invitation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationResendView(OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Send an invitation again (admins)",
        description="A new link, valid for the full period again; the links sent before stop working.",
        request=None,
        responses={200: InvitationOutput},
        tags=["invitations"],
    )
    def post(self, request, invitation_id, *args, **kwargs):
        invitation = invitations.invitation_resend(org=self.organisation, invitation_id=invitation_id)
        return Response(InvitationOutput(invitation).data)


_FILTER_TEXT = {"type": "string", "maxLength": 300, "pattern": r"^[^\x00-\x1f\x7f]*$"}
_AUDIT_LOG_PARAMETERS = [
    OpenApiParameter("actor", _FILTER_TEXT, description="An actor's label (user:a@b.example, key:ci) or id."),
    multi_value_parameter(
        "action", allowed=ACTION_FILTERS, description="Actions, or families such as member.*"
    ),
    OpenApiParameter("target", _FILTER_TEXT, description="A target's type (webhook, member, ...) or id."),
    date_parameter("from", "Events at or after this date or time"),
    date_parameter("to", "Events at or before this date (the whole day) or time"),
]


def _audit_log_query(request, organisation):
    actor = request.query_params.get("actor", "").strip()
    target = request.query_params.get("target", "").strip()
    for name, value in (("actor", actor), ("target", target)):
        if len(value) > 300 or re.search(r"[\x00-\x1f\x7f]", value):
            raise field_error(name, f"{name} must be at most 300 printable characters.")
    events = audit_events(
        organisation_id=organisation.pk,
        actor=actor,
        actions=multi_value(request, "action", allowed=ACTION_FILTERS),
        target=target,
    )
    return date_range(events, request, field="created_at")


class AuditLogView(OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="The organisation's audit log, newest first (admins)",
        description="Who changed what, when, from where. Events are never changed or deleted, except "
        f"by the retention of {settings.AUDIT_LOG_RETENTION_DAYS} days.",
        parameters=_AUDIT_LOG_PARAMETERS,
        responses={200: AuditEventOutput(many=True)},
        tags=["audit-log"],
    )
    def get(self, request, *args, **kwargs):
        return paginated(request, _audit_log_query(request, self.organisation), AuditEventOutput)


class AuditLogExportView(CsvDownloadMixin, OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="The audit log as CSV (admins; streamed)",
        description=(
            "The same filters as the list, newest first, at most "
            f"{settings.AUDIT_LOG_EXPORT_MAX_ROWS:,} rows. "
            "A cell starting with = + - @, a tab or a carriage return is prefixed with a single quote."
        ),
        parameters=_AUDIT_LOG_PARAMETERS,
        responses={(200, "text/csv"): OpenApiResponse(response=OpenApiTypes.STR, description="The CSV.")},
        tags=["audit-log"],
    )
    def get(self, request, *args, **kwargs):
        return audit_log_download(_audit_log_query(request, self.organisation), name=self.organisation.slug)
