from django.urls import path

from tenants import api

urlpatterns = [
    path("auth/token", api.TokenObtainView.as_view(), name="auth-token"),
    path("auth/refresh", api.TokenRefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", api.LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all", api.LogoutAllView.as_view(), name="auth-logout-all"),
    path("auth/me", api.MeView.as_view(), name="auth-me"),
    path("org", api.OrganisationView.as_view(), name="org"),
    path("org/members", api.MemberListView.as_view(), name="org-members"),
    path("org/members/<uuid:member_id>", api.MemberDetailView.as_view(), name="org-member"),
]
