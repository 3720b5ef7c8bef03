"""API shapes of organisations, members, tokens, API keys, invitations and the audit log."""

from __future__ import annotations

from rest_framework import serializers

from auditlog.models import AuditEvent
from nexus.api.fields import PlainTextField, StrictBooleanField
from tenants.apikeys import SCOPES
from tenants.models import ApiKey, Invitation, Organisation, Role, User


class OrganisationOutput(serializers.ModelSerializer):
    personal = serializers.BooleanField(source="is_personal")

    class Meta:
        model = Organisation
        fields = ["id", "name", "slug", "email_domain", "domain_auto_join", "plan", "personal", "created_at"]


class MemberOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name", "role", "date_joined"]


class MeOutput(serializers.Serializer):
    user = MemberOutput()
    organisation = OrganisationOutput()
    role = serializers.ChoiceField(choices=Role.choices)


class TokenOutput(serializers.Serializer):
    access = serializers.CharField()
    token_type = serializers.CharField()
    expires_at = serializers.DateTimeField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")


class RoleInput(serializers.Serializer):
    # A PATCH, but the role is the whole change: the published document says so.
    openapi_request_rules = {"required": ["role"]}
    role = serializers.ChoiceField(choices=Role.choices)


class OrganisationInput(serializers.Serializer):
    domain_auto_join = StrictBooleanField(
        help_text="Whether Google Workspace users of the organisation's domain join by signing in "
        "(true) or only by invitation (false)."
    )


class ApiKeyInput(serializers.Serializer):
    name = PlainTextField(max_length=50)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(SCOPES)), min_length=1, max_length=len(SCOPES)
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class ApiKeyOutput(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email")
    created_at = serializers.DateTimeField(source="created")
    expires_at = serializers.DateTimeField(source="expiry_date", allow_null=True)
    status = serializers.ChoiceField(choices=["active", "expired", "revoked"], read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "prefix", "scopes", "status", "created_by", "created_at", "expires_at",
            "last_used_at", "last_used_ip", "revoked_at",
        ]  # fmt: skip


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The secret: shown this once, never again.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


class InvitationInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class InvitationOutput(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email")
    accepted_by = serializers.EmailField(source="accepted_by.email", allow_null=True, default=None)
    status = serializers.CharField()

    class Meta:
        model = Invitation
        fields = [
            "id", "email", "role", "status", "invited_by", "created_at", "expires_at", "sent_count",
            "last_sent_at", "last_send_error", "accepted_at", "accepted_by", "revoked_at",
        ]  # fmt: skip


class AuditTargetOutput(serializers.Serializer):
    type = serializers.CharField(source="target_type")
    id = serializers.CharField(source="target_id")
    label = serializers.CharField(source="target_label")


class AuditEventOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")
    target = AuditTargetOutput(source="*")

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor_kind", "actor", "actor_id", "action", "target", "changes", "ip",
                  "user_agent", "request_id"]  # fmt: skip
