"""One URLconf for every request: the organisation is chosen from the caller (see
tenants.middleware), never from the hostname, so public and tenant routes live together."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from audits import views as audit_views
from billing import views as billing_views
from billing.stripe_webhook import stripe_webhook
from etl import views as etl_views
from jobs import views as job_views
from nexus import health, metrics, operations_views, periodic_endpoint, views
from tenants import team_views
from tenants import views as tenant_views
from webhooks import views as webhook_views

# Every version is served by the same views; serializers add a version's fields.
api_urls = [
    path("", include("tenants.urls")),
    path("", include("billing.urls")),
    path("", include("jobs.urls")),
    path("", include("webhooks.urls")),
    path("", include("etl.urls")),
    path("", include("audits.urls")),
]

urlpatterns = [
    path("health", health.health, name="health"),
    path("stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("metrics", metrics.metrics, name="metrics"),
    # Beat's schedule triggered by Cloud Scheduler (404 unless PERIODIC_INVOKER is set).
    path("internal/periodic/<slug:entry>", periodic_endpoint.trigger, name="periodic-trigger"),
    # Before the admin's own URLs: its unthrottled login form is never served.
    path("admin/login/", tenant_views.operator_login, name="operator-login"),
    # Staff only (admin_view: anyone else is sent to the admin's sign-in).
    path(
        "admin/operations/",
        admin.site.admin_view(operations_views.operations_page),
        name="admin-operations",
    ),
    path("admin/", admin.site.urls),
    # Google sign-in. The names are allauth's, so its templates and redirect_uri use them.
    path("auth/login", tenant_views.google_login, name="google_login"),
    path("auth/callback", tenant_views.google_callback, name="google_callback"),
    path("accounts/", include("allauth.account.urls")),
    path("accounts/3rdparty/", include("allauth.socialaccount.urls")),
    path("api/schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    path("api/schema/v2/", SpectacularAPIView.as_view(api_version="v2"), name="schema-v2"),
    # The split view serves Swagger UI's start-up script as its own response (?script), so
    # the page needs no inline script under the Content-Security-Policy.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html"),
        name="swagger-ui",
    ),
    path(
        "api/docs/v2/",
        SpectacularSwaggerSplitView.as_view(url_name="schema-v2", template_name="api/swagger_ui.html"),
        name="swagger-ui-v2",
    ),
    re_path(r"^api/(?P<version>v1|v2)/", include(api_urls)),
    # Anything else under /api/ is a JSON 404, in DEBUG too (never Django's HTML page).
    re_path(r"^api/", views.not_found),
    # Pages for people (session sign-in).
    path("", job_views.dashboard, name="home"),
    path("partials/balance", billing_views.balance_partial, name="balance-partial"),
    path("jobs", job_views.jobs_page, name="jobs-page"),
    path("jobs/submit", job_views.submit, name="jobs-submit"),
    path("jobs/<uuid:job_id>/result", job_views.result, name="jobs-result"),
    path("audits", audit_views.audits_page, name="audits-page"),
    path("audits/<uuid:audit_id>", audit_views.audit_page, name="audits-detail"),
    path("audits/<uuid:audit_id>/progress", audit_views.audit_progress_partial, name="audits-progress"),
    path("audits/<uuid:audit_id>/action", audit_views.audit_action, name="audits-action"),
    path("audits/<uuid:audit_id>/results.csv", audit_views.audit_results_csv, name="audits-results-csv"),
    path("billing", billing_views.billing_page, name="billing-page"),
    path("billing/buy", billing_views.buy, name="billing-buy"),
    path("members", tenant_views.members_page, name="members-page"),
    path("members/<uuid:member_id>", tenant_views.member_update, name="members-update"),
    path("members/invite", team_views.invitation_create, name="members-invite"),
    path(
        "members/invitations/<uuid:invitation_id>/action",
        team_views.invitation_action,
        name="members-invitation",
    ),
    path("members/settings", team_views.organisation_settings, name="members-settings"),
    path("members/leave", team_views.leave, name="members-leave"),
    path("invitations/<str:token>", team_views.invitation_page, name="invitation"),
    path("invitations/<str:token>/google", team_views.invitation_google, name="invitation-google"),
    path("api-access", tenant_views.api_access_page, name="api-access"),
    path("api-keys", team_views.api_keys_page, name="api-keys-page"),
    path("api-keys/create", team_views.api_key_create, name="api-keys-create"),
    path("api-keys/<uuid:key_id>/revoke", team_views.api_key_revoke, name="api-keys-revoke"),
    path("audit-log", team_views.audit_log_page, name="audit-log-page"),
    path("audit-log.csv", team_views.audit_log_csv_download, name="audit-log-csv"),
    path("account/sign-out-everywhere", tenant_views.sign_out_everywhere, name="sign-out-everywhere"),
    path("webhooks", webhook_views.webhooks_page, name="webhooks-page"),
    path("webhooks/create", webhook_views.webhook_create, name="webhooks-create"),
    path("webhooks/<uuid:endpoint_id>", webhook_views.webhook_deliveries_page, name="webhooks-deliveries"),
    path("webhooks/<uuid:endpoint_id>/action", webhook_views.webhook_action, name="webhooks-action"),
    path(
        "webhooks/notices/<uuid:notice_id>/dismiss",
        webhook_views.webhook_notice_dismiss,
        name="webhooks-notice-dismiss",
    ),
    path(
        "webhooks/deliveries/<str:delivery_id>/redeliver",
        webhook_views.webhook_redeliver,
        name="webhooks-redeliver",
    ),
    path("data", etl_views.data_page, name="data-page"),
    path("data/sources/new", etl_views.source_add, name="data-source-add"),
    path("data/sources/<uuid:source_id>/edit", etl_views.source_edit, name="data-source-edit"),
    path("data/sources/<uuid:source_id>/file", etl_views.source_file_upload, name="data-source-file"),
    path("data/sources/<uuid:source_id>/run", etl_views.run_now, name="data-run"),
    path("data/records/<int:record_id>/job", etl_views.record_job, name="data-record-job"),
]

handler400 = "nexus.views.bad_request"
handler403 = "nexus.views.permission_denied"
handler404 = "nexus.views.not_found"
handler500 = "nexus.views.server_error"
