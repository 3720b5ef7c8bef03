from django.urls import path

from tenants import api, team_api

urlpatterns = [
    path("auth/token", api.TokenObtainView.as_view(), name="auth-token"),
    path("auth/refresh", api.TokenRefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", api.LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all", api.LogoutAllView.as_view(), name="auth-logout-all"),
    path("auth/me", api.MeView.as_view(), name="auth-me"),
    path("org", api.OrganisationView.as_view(), name="org"),
    path("org/leave", team_api.LeaveView.as_view(), name="org-leave"),
    path("org/members", api.MemberListView.as_view(), name="org-members"),
    path("org/members/<uuid:member_id>", api.MemberDetailView.as_view(), name="org-member"),
    path("api-keys", team_api.ApiKeyListView.as_view(), name="api-keys"),
    path("api-keys/<uuid:key_id>", team_api.ApiKeyDetailView.as_view(), name="api-key"),
    path("invitations", team_api.InvitationListView.as_view(), name="invitations"),
    path("invitations/<uuid:invitation_id>", team_api.InvitationDetailView.as_view(), name="invitation"),
    path(
        "invitations/<uuid:invitation_id>/resend",
        team_api.InvitationResendView.as_view(),
        name="invitation-resend",
    ),
    path("audit-log", team_api.AuditLogView.as_view(), name="audit-log"),
    path("audit-log/export.csv", team_api.AuditLogExportView.as_view(), name="audit-log-export"),
]
