"""One URLconf for every request: the organisation is chosen from the caller (see
tenants.middleware), never from the hostname, so public and tenant routes live together."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing.stripe_webhook import stripe_webhook
from nexus import health, metrics, views
from tenants import views as tenant_views

# Every version is served by the same views; serializers add a version's fields.
api_urls = [
    path("", include("tenants.urls")),
    path("", include("billing.urls")),
    path("", include("jobs.urls")),
    path("", include("webhooks.urls")),
    path("", include("etl.urls")),
]

urlpatterns = [
    path("health", health.health, name="health"),
    path("stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # Google sign-in. The names are allauth's, so its templates and redirect_uri use them.
    path("auth/login", tenant_views.google_login, name="google_login"),
    path("auth/callback", tenant_views.google_callback, name="google_callback"),
    path("accounts/", include("allauth.account.urls")),
    path("accounts/3rdparty/", include("allauth.socialaccount.urls")),
    path("api/schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    path("api/schema/v2/", SpectacularAPIView.as_view(api_version="v2"), name="schema-v2"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/docs/v2/", SpectacularSwaggerView.as_view(url_name="schema-v2"), name="swagger-ui-v2"),
    re_path(r"^api/(?P<version>v1|v2)/", include(api_urls)),
    # Anything else under /api/ is a JSON 404, in DEBUG too (never Django's HTML page).
    re_path(r"^api/", views.not_found),
    path("", tenant_views.home, name="home"),
]

handler400 = "nexus.views.bad_request"
handler403 = "nexus.views.permission_denied"
handler404 = "nexus.views.not_found"
handler500 = "nexus.views.server_error"
