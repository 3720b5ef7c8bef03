"""Auth tokens, the caller's organisation and its members. Views are thin: validate,
call one service or selector, serialize."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from nexus.api.pagination import paginated
from nexus.api.permissions import AdminForWrites, IsOrganisationAdmin, IsOrganisationMember
from nexus.api.query import apply_sort, multi_value, multi_value_parameter, sort_parameter
from nexus.api.views import OrganisationEndpoint
from tenants import selectors, services
from tenants.models import Role
from tenants.serializers import (
    MemberOutput,
    MeOutput,
    OrganisationInput,
    OrganisationOutput,
    RoleInput,
    TokenOutput,
)


def _refresh_cookie_path(request) -> str:
    """The refresh cookie goes only to the auth endpoints of the version that set it."""
    return settings.REFRESH_COOKIE_PATH.format(version=request.version or "v1")


def _token_response(request, pair: services.TokenPair, *, status_code: int = 200) -> Response:
    body = TokenOutput(
        {
            "access": pair.access,
            "token_type": "Bearer",  # nosec B105
            "expires_at": pair.access_expires_at,
            "expires_in": max(0, int((pair.access_expires_at - timezone.now()).total_seconds())),
        }
    ).data
    response = Response(body, status=status_code)
    response.set_cookie(
        settings.REFRESH_COOKIE_NAME,
        pair.refresh,
        max_age=int(settings.REFRESH_TOKEN_LIFETIME.total_seconds()),
        httponly=True,
        secure=settings.REFRESH_COOKIE_SECURE,
        samesite="Lax",
        path=_refresh_cookie_path(request),
    )
    return response


class TokenObtainView(OrganisationEndpoint):
    """Exchange a signed-in browser session for API tokens."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsOrganisationMember]

    @extend_schema(
        summary="Get an access token for the signed-in user",
        description=(
            "Session-authenticated and CSRF-protected. Returns a 15-minute access token and "
            "sets the 7-day refresh token as an HttpOnly cookie scoped to this version's /auth/ path."
        ),
        request=None,
        responses={200: TokenOutput},
        tags=["auth"],
    )
    def post(self, request, *args, **kwargs):
        return _token_response(request, services.token_pair_issue(user=request.user))


class TokenRefreshView(APIView):
    """Rotate the refresh cookie: a new access token and a new refresh token; the old
    refresh token is blacklisted, so it works once."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Refresh the access token using the refresh cookie",
        description=(
            "A refresh token works once. Sending one that was already rotated is treated as "
            "theft: every token of its sign-in is revoked and the answer is 401."
        ),
        request=None,
        responses={200: TokenOutput},
        tags=["auth"],
    )
    def post(self, request, *args, **kwargs):
        raw = request.COOKIES.get(settings.REFRESH_COOKIE_NAME, "")
        return _token_response(request, services.token_pair_refresh(raw_refresh=raw))


class LogoutView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Revoke the refresh token (and every token of its sign-in) and clear its cookie",
        request=None,
        responses={204: OpenApiResponse(description="Logged out")},
        tags=["auth"],
    )
    def post(self, request, *args, **kwargs):
        services.token_revoke(raw_refresh=request.COOKIES.get(settings.REFRESH_COOKIE_NAME, ""))
        response = Response(status=status.HTTP_204_NO_CONTENT)
        response.delete_cookie(
            settings.REFRESH_COOKIE_NAME, path=_refresh_cookie_path(request), samesite="Lax"
        )
        return response


class LogoutAllView(OrganisationEndpoint):
    """Sign out everywhere: every token and session of the caller ends."""

    @extend_schema(
        summary="Sign out everywhere: revoke every token and session of the caller",
        description=(
            "Authenticated by an access token (or a session, with CSRF). Every refresh token of "
            "the caller is revoked and every access token issued before this call, this one "
            "included, is refused with 401 from the next request; every browser session of the "
            "caller ends too. The refresh cookie is cleared. Other users are unaffected."
        ),
        request=None,
        responses={204: OpenApiResponse(description="Signed out everywhere")},
        tags=["auth"],
    )
    def post(self, request, *args, **kwargs):
        services.user_sign_out_everywhere(user=request.user)
        response = Response(status=status.HTTP_204_NO_CONTENT)
        response.delete_cookie(
            settings.REFRESH_COOKIE_NAME, path=_refresh_cookie_path(request), samesite="Lax"
        )
        return response


class MeView(OrganisationEndpoint):
    @extend_schema(
        summary="The caller, their organisation and role", responses={200: MeOutput}, tags=["auth"]
    )
    def get(self, request, *args, **kwargs):
        user = request.user
        return Response(MeOutput({"user": user, "organisation": self.organisation, "role": user.role}).data)


class OrganisationView(OrganisationEndpoint):
    permission_classes = [AdminForWrites]

    @extend_schema(
        summary="The caller's organisation", responses={200: OrganisationOutput}, tags=["organisation"]
    )
    def get(self, request, *args, **kwargs):
        return Response(OrganisationOutput(self.organisation).data)

    @extend_schema(
        summary="Change the organisation's settings (admins)",
        description="`domain_auto_join`: whether Google Workspace users of the organisation's domain join "
        "by signing in (the default) or only by invitation. Recorded in the audit log with before and after.",
        request=OrganisationInput,
        responses={200: OrganisationOutput},
        tags=["organisation"],
    )
    def patch(self, request, *args, **kwargs):
        payload = OrganisationInput(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        org = services.organisation_update(org=self.organisation, **payload.validated_data)
        return Response(OrganisationOutput(org).data)


class MemberListView(OrganisationEndpoint):
    @extend_schema(
        summary="Members of the caller's organisation",
        parameters=[
            OpenApiParameter("search", str, description="Matches email or name."),
            multi_value_parameter("role", allowed=set(Role.values)),
            sort_parameter(allowed={"email", "name", "role", "date_joined"}, default="email"),
        ],
        responses={200: MemberOutput(many=True)},
        tags=["organisation"],
    )
    def get(self, request, *args, **kwargs):
        members = selectors.member_list(
            org=self.organisation,
            search=request.query_params.get("search", "").strip()[:100],
            roles=multi_value(request, "role", allowed=set(Role.values)),
        )
        members = apply_sort(
            members, request, allowed={"email", "name", "role", "date_joined"}, default="email"
        )
        return paginated(request, members, MemberOutput)


class MemberDetailView(OrganisationEndpoint):
    permission_classes = [IsOrganisationAdmin]

    @extend_schema(
        summary="Change a member's role (admins only)",
        request=RoleInput,
        responses={200: MemberOutput},
        tags=["organisation"],
    )
    def patch(self, request, member_id, *args, **kwargs):
        payload = RoleInput(data=request.data)
        payload.is_valid(raise_exception=True)
        member = services.member_change_role(
            org=self.organisation, member_id=member_id, role=payload.validated_data["role"]
        )
        return Response(MemberOutput(member).data)

    @extend_schema(
        summary="Remove a member from the organisation (admins only)",
        responses={204: OpenApiResponse(description="Removed")},
        tags=["organisation"],
    )
    def delete(self, request, member_id, *args, **kwargs):
        services.member_remove(org=self.organisation, member_id=member_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
