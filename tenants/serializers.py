"""API shapes of organisations, members and tokens."""

from __future__ import annotations

from rest_framework import serializers

from tenants.models import Organisation, Role, User


class OrganisationOutput(serializers.ModelSerializer):
    personal = serializers.BooleanField(source="is_personal")

    class Meta:
        model = Organisation
        fields = ["id", "name", "slug", "email_domain", "plan", "personal", "created_at"]


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
