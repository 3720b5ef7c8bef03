"""NexusAPI settings: one module, driven by environment variables only.

`.env.example` lists every variable. Outside DEBUG no secret has a default: a missing one
stops the process at start-up instead of running with a guessable value.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from datetime import timedelta
from pathlib import Path

import dj_database_url
import prometheus_client
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
TESTING = env_bool("NEXUS_TESTING", False)

SECRET_KEY = env("SECRET_KEY")
# True when the key below is the public development one: web says so in its first line.
SECRET_KEY_IS_DEVELOPMENT = not SECRET_KEY
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105  # nosec B105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG or TESTING else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Behind a TLS-terminating proxy, trust its X-Forwarded-Proto so request.is_secure() is right.
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Applications -----------------------------------------------------------------------
# The split between public and per-organisation schemas is decided here, once: moving an
# app between the two later creates no tables (its migrations are already recorded).
SHARED_APPS = [
    "tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    # After the admin: django-tenants' admin templates assume every request has a tenant,
    # and an operator's admin requests deliberately have none.
    "django_tenants",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "rest_framework",
    # Its abstract key model, hasher and admin base; tenants.ApiKey is the table used (the
    # library's own APIKey table stays empty, and out of the admin).
    "rest_framework_api_key",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    "nexus",
    # Pack catalogue, Stripe event log and the session -> organisation index. The ledger
    # and purchases (billing) are per organisation.
    "billing.public",
    # Who changed what, in every organisation (one table, read by operators across them).
    "auditlog",
]
TENANT_APPS: list[str] = [
    # Per-organisation data. Each app listed here gets its tables in every organisation's
    # schema (and in the template schema new organisations are cloned from).
    "django.contrib.contenttypes",
    "nexus",  # idempotency records (the app is also shared: platform plumbing)
    "billing",
    "jobs",
    "webhooks",
    "etl",
    "audits",
]
INSTALLED_APPS = list(dict.fromkeys(SHARED_APPS + TENANT_APPS))

TENANT_MODEL = "tenants.Organisation"
PUBLIC_SCHEMA_NAME = "public"
# New organisations are cloned from this schema instead of running every migration. Every
# organisation schema is "org_<slug>", so no organisation can ever be given this name
# (see tenants/schema_template.py for how it is kept current).
TENANT_TEMPLATE_SCHEMA = "template_org"
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# Issue `SET search_path` only when the schema changes, not before every query (the
# backend forgets it on rollback and on every set_tenant/set_schema).
TENANT_LIMIT_SET_CALLS = True

AUTH_USER_MODEL = "tenants.User"
SITE_ID = 1

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "nexus.middleware.RequestContextMiddleware",
    # Above everything that may touch PostgreSQL or Redis, so an outage anywhere below is a
    # 503 envelope on /api/ (and never the debug page).
    "nexus.middleware.FailureEnvelopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "nexus.csp.ContentSecurityPolicyMiddleware",
    # Health probes, whatever Host they send (see nexus.health).
    "nexus.health.HealthProbeMiddleware",
    # After the security headers, so its early refusals carry HSTS, CSP and nosniff too.
    "nexus.middleware.ApiInputGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.TenantFromCallerMiddleware",
    # After the caller is known: the audit log's actor (user, API key, operator) and address.
    "auditlog.middleware.AuditActorMiddleware",
    "nexus.ratelimit.RateLimitMiddleware",
    "nexus.api.versioning.ApiVersionLifecycleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "nexus.urls"
WSGI_APPLICATION = "nexus.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/nexus")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
_db["ENGINE"] = "django_tenants.postgresql_backend"
_db.setdefault("OPTIONS", {})
_db["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5))
_db["CONN_HEALTH_CHECKS"] = True
# How long a worker's task waits for the database to come back before it gives up (and
# leaves its work to the sweeps): long enough for a restart or a failover.
DATABASE_OUTAGE_WAIT_SECONDS = float(env("DATABASE_OUTAGE_WAIT_SECONDS", "60"))
# The test database is test_<database name>, so checkouts using different DATABASE_URLs
# can run their suites side by side.
_db["TEST"] = {"NAME": env("TEST_DATABASE_NAME", f"test_{_db['NAME']}")}
DATABASES = {"default": _db}
# django-prometheus wraps the real backend here; setting ENGINE to its backend would
# bypass django-tenants' schema switching.
ORIGINAL_BACKEND = "django_prometheus.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery ---------------------------------------------------------------
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_SOCKET_TIMEOUT = float(env("REDIS_SOCKET_TIMEOUT", "0.5"))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", "nexus"),
        "OPTIONS": {
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
        },
    }
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# A task not acknowledged within this window is handed to another worker. It must exceed
# the longest countdown any task is given, or a delayed retry would run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": 2,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
# One queue per kind of work, each consumed by its own worker process, so slow work of one
# kind (an organisation's ETL run) never waits in front of another (everyone's AI jobs).
# The prefix keeps deployments sharing a Redis apart.
CELERY_QUEUE_PREFIX = env("CELERY_QUEUE_PREFIX", "")
CELERY_QUEUES_BY_KIND = {
    kind: f"{CELERY_QUEUE_PREFIX}{kind}" for kind in ("jobs", "webhooks", "etl", "audits", "periodic")
}
CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUES_BY_KIND["periodic"]
_ROUTED = {
    "jobs": ["jobs.run_job"],
    # Outbound traffic: webhook deliveries and invitation emails.
    "webhooks": ["webhooks.deliver", "tenants.send_invitation"],
    "etl": ["etl.execute_run"],
    # One batch of an audit per message: a long audit never holds the AI jobs' worker.
    "audits": ["audits.run_batch"],
    # Beat's tasks and the per-organisation tasks they fan out to: short bookkeeping.
    "periodic": [
        "jobs.sweep",
        "jobs.sweep_organisation",
        "webhooks.sweep",
        "webhooks.sweep_organisation",
        "etl.dispatch_due",
        "etl.dispatch_organisation",
        "etl.sweep",
        "etl.sweep_organisation",
        "audits.sweep",
        "audits.sweep_organisation",
        "billing.reconcile",
        "billing.reconcile_organisation",
        "nexus.purge_idempotency_keys",
        "nexus.purge_organisation_idempotency_keys",
        "tenants.flush_expired_tokens",
        "auditlog.purge",
        "tenants.resend_unsent_invitations",
    ],
}
CELERY_TASK_ROUTES = {
    name: {"queue": CELERY_QUEUES_BY_KIND[kind]} for kind, names in _ROUTED.items() for name in names
}
# Every task has a soft limit (an exception it can clean up after) and a hard one (the
# worker process is replaced). Tasks that need another bound declare their own.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
# django-celery-beat's DatabaseScheduler, reconnecting to a lost broker every
# BROKER_RECONNECT_SECONDS (nexus/beat.py).
CELERY_BEAT_SCHEDULER = "nexus.beat:NexusScheduler"
# Touched after every pass of beat's loop (at least every JOB_SWEEP_SECONDS): a container's
# health check reads its age. Unset: no file.
BEAT_HEARTBEAT_FILE = env("BEAT_HEARTBEAT_FILE", "")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Survives a broker outage with messages unacknowledged and reconnects every
# BROKER_RECONNECT_SECONDS, for as long as the outage lasts (see nexus.celery.NexusConsumer).
CELERY_WORKER_CONSUMER = "nexus.celery:NexusConsumer"
BROKER_RECONNECT_SECONDS = float(env("BROKER_RECONNECT_SECONDS", "2"))
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A task running when the broker goes away finishes its attempt: its outcome is written to
# the database by a conditional transition, so a redelivered copy finds nothing to do.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False

# --- Authentication ---------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

ACCOUNT_ADAPTER = "tenants.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "tenants.adapters.SocialAccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGOUT_ON_GET = False
# Every password sign-in, operators' included (/admin/login/ redirects here), is throttled:
# after 5 failures for one email within 5 minutes, or 10 from one address within a minute,
# the form refuses even the right password until the window passes. Counts live in the
# cache (Redis). Written out rather than left to allauth's defaults so a library upgrade
# cannot loosen them unnoticed.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
}
# The client address allauth's limits count by: the same proxy count as the API's limiter.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("RATE_LIMIT_TRUSTED_PROXIES", 0)
SOCIALACCOUNT_LOGIN_ON_GET = True
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_STORE_TOKENS = False
GOOGLE_CLIENT_ID = env("GOOGLE_CLIENT_ID", "")
GOOGLE_CLIENT_SECRET = env("GOOGLE_CLIENT_SECRET", "")
SOCIALACCOUNT_PROVIDERS = {
    "google": {
        # No app without a client id: the sign-in page then offers no Google button and
        # /auth/login explains that Google sign-in is not configured.
        "APPS": (
            [{"client_id": GOOGLE_CLIENT_ID, "secret": GOOGLE_CLIENT_SECRET, "key": ""}]
            if GOOGLE_CLIENT_ID
            else []
        ),
        "SCOPE": ["openid", "profile", "email"],
        "AUTH_PARAMS": {"access_type": "online", "prompt": "select_account"},
        "OAUTH_PKCE_ENABLED": True,
        "EMAIL_AUTHENTICATION": True,
    }
}

ACCESS_TOKEN_LIFETIME = timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15))
REFRESH_TOKEN_LIFETIME = timedelta(days=env_int("JWT_REFRESH_DAYS", 7))
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": ACCESS_TOKEN_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": REFRESH_TOKEN_LIFETIME,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env("JWT_SIGNING_KEY", SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "LEEWAY": 0,
}
REFRESH_COOKIE_NAME = "nexus_refresh"
REFRESH_COOKIE_PATH = "/api/{version}/auth/"  # the version of the request that set it
REFRESH_COOKIE_SECURE = not DEBUG

# --- Sessions, cookies, security headers -------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG and not TESTING
CSRF_COOKIE_SECURE = not DEBUG and not TESTING
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 24 * 14)
CSRF_FAILURE_VIEW = "nexus.views.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Health probes (a container's own, a load balancer's) speak plain HTTP to the server.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
# HSTS on every response to a secure request (SecurityMiddleware sends it only then): a
# year outside DEBUG, so a browser that has seen us once never tries plain http again.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Every asset is vendored and no page has inline script, handler or style: 'self' only.
# data: images are the icons inside Pico's and Swagger UI's stylesheets.
CONTENT_SECURITY_POLICY = env(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'",
)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]

# --- Internationalisation, static files ---------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Files organisations upload (ETL sources): Django's storage API, one location per
# organisation (<org schema>/...) under the storage root. The cloud backends need their
# client: Google Cloud Storage's is installed (requirements.in), S3's is the
# "django-storages[s3]" extra.
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / ".data" / "media")))
MEDIA_URL = "/media/"  # never served: uploads are read by the workers only
FILE_STORAGE_BACKEND = env("FILE_STORAGE_BACKEND", "filesystem")
_file_storage_prefix = env("FILE_STORAGE_PREFIX", "")
if FILE_STORAGE_BACKEND == "filesystem":
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # No "location": it follows MEDIA_ROOT.
        "OPTIONS": {
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    }
elif FILE_STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("FILE_STORAGE_BUCKET"),
            "location": _file_storage_prefix,
            "region_name": env("FILE_STORAGE_S3_REGION"),
            "endpoint_url": env("FILE_STORAGE_S3_ENDPOINT_URL"),
            "default_acl": "private",
            # A new upload never overwrites the object the source still reads.
            "file_overwrite": False,
        },
    }
elif FILE_STORAGE_BACKEND == "gcs":
    _default_storage = {
        "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
        "OPTIONS": {
            "bucket_name": env("FILE_STORAGE_BUCKET"),
            "location": _file_storage_prefix,
            # No object ACLs: the bucket uses uniform bucket-level access (IAM decides who
            # reads; docs/deploy.md), which refuses uploads that carry an ACL.
            "default_acl": None,
            "file_overwrite": False,
        },
    }
else:
    raise ImproperlyConfigured("FILE_STORAGE_BACKEND must be filesystem, s3 or gcs.")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.TenantJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["nexus.api.permissions.IsOrganisationMember"],
    "DEFAULT_RENDERER_CLASSES": ["nexus.api.renderers.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["nexus.api.parsers.StrictJSONParser"],
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.URLPathVersioning",
    "DEFAULT_VERSION": "v1",
    "ALLOWED_VERSIONS": ["v1", "v2"],
    "DEFAULT_PAGINATION_CLASS": "nexus.api.pagination.PagePagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "nexus.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "nexus.api.versioning.VersionedAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Request bodies under /api/ (docs/specs/input-validation.md). Larger: 413 PAYLOAD_TOO_LARGE.
# A view raises or lowers its own limit with a `max_body_bytes` attribute; API_BODY_LIMITS
# (JSON: {"path regex": bytes}) does it for a path whose view cannot carry one.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
API_BODY_LIMITS = json.loads(env("API_BODY_LIMITS", "{}") or "{}")
# A refused body is read and discarded up to this many bytes so the client can read the 413.
API_BODY_DRAIN_BYTES = env_int("API_BODY_DRAIN_BYTES", 8 * 1024 * 1024)

SPECTACULAR_SETTINGS = {
    "TITLE": "NexusAPI",
    "DESCRIPTION": (
        "Multi-tenant AI jobs, credits, webhooks and data ingestion.\n\n"
        "Rules for every request (docs/specs/input-validation.md): no string anywhere (body, "
        "object keys, query) may contain NUL or an unpaired surrogate (422 VALIDATION_ERROR); "
        "JSON may not repeat a key in one object, nest deeper than 64 levels or use NaN/Infinity "
        "(400 MALFORMED_REQUEST); a body over the endpoint's limit is 413 PAYLOAD_TOO_LARGE; an "
        "empty query parameter is the parameter absent."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No validator badge: it would load an image from swagger.io (and tell it our schema URL).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.JobStatus",
        "DeliveryStatusEnum": "webhooks.models.DeliveryStatus",
        "PurchaseStatusEnum": "billing.models.PurchaseStatus",
        "EtlRunStatusEnum": "etl.models.RunStatus",
        "SourceKindEnum": "etl.models.SourceKind",
        "TransactionKindEnum": "billing.models.TransactionKind",
        "JobEventKindEnum": "jobs.models.EventKind",
        "DriftKindEnum": "etl.models.DriftKind",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "nexus.schema.document_contract",
        "nexus.schema.wrap_in_envelope",
    ],
}

# Idempotency keys: responses kept 24 h; a key whose first request never finished is
# released after IDEMPOTENCY_LOCK_SECONDS (longer than any request may run).
IDEMPOTENCY_TTL_SECONDS = env_int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600)
IDEMPOTENCY_LOCK_SECONDS = env_int("IDEMPOTENCY_LOCK_SECONDS", 60)

# Deprecated API versions: {"v1": {"deprecated": "2027-01-01", "sunset": "2027-07-01",
# "link": "https://…/docs/api-versioning"}} as JSON. Responses under a listed version carry
# Deprecation, Sunset and Link headers (docs/api-versioning.md).
API_VERSION_LIFECYCLE = json.loads(env("API_VERSION_LIFECYCLE", "{}") or "{}")

# --- Observability ------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOG_FORMAT = env("LOG_FORMAT", "console" if DEBUG else "json")
# On Google Cloud: the project whose Cloud Trace a request's log lines link to (the
# logging.googleapis.com/trace field, from the X-Cloud-Trace-Context header Cloud Run sets).
GOOGLE_CLOUD_PROJECT = env("GOOGLE_CLOUD_PROJECT", "")
LOGGING_CONFIG = None  # configured by nexus.logging on start-up, below
from nexus.logging import configure_logging  # noqa: E402

configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT)

# Errors go to Sentry when SENTRY_DSN is set (nexus.observability tags every event with the
# organisation, user, request, task, job or run). Tests never send, except the test that
# points SENTRY_DSN at a local stand-in and says so with SENTRY_IN_TESTS.
SENTRY_DSN = env("SENTRY_DSN")
SENTRY_ENVIRONMENT = env("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")
# The deploy sets RELEASE (the image's commit); otherwise the project's version.
RELEASE = env("RELEASE", "") or "nexus@{}".format(
    tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]["version"]
)
if SENTRY_DSN and (not TESTING or env_bool("SENTRY_IN_TESTS", False)):
    from nexus.observability import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=RELEASE,
        traces_sample_rate=float(env("SENTRY_TRACES_SAMPLE_RATE", "0.0")),
    )

PROMETHEUS_EXPORT_MIGRATIONS = False
# No `_created` series beside every counter and histogram: Prometheus does not use them.
prometheus_client.disable_created_metrics()
# /metrics fails closed outside DEBUG: the scraper sends METRICS_TOKEN as a bearer token
# and/or calls from one of METRICS_ALLOWED_IPS (addresses or CIDR networks, comma
# separated); every configured check must pass. Neither configured: 404 (DEBUG: open).
METRICS_TOKEN = env("METRICS_TOKEN", "")
# The series read at scrape time (queue depths, the job backlog across organisations) are
# reused for this long within a process, so several scrapers cost one read.
METRICS_LIVE_CACHE_SECONDS = float(env("METRICS_LIVE_CACHE_SECONDS", "5"))
# A Celery worker that cannot share web's PROMETHEUS_MULTIPROC_DIR (its own container or
# host) serves its own counts on this port at /metrics (same token and address checks);
# unset: it counts into the shared directory and web's /metrics shows them.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {_network!r} is not an address or network") from exc

# --- Product settings ---------------------------------------------------------------------
DEMO_PASSWORD = env("DEMO_PASSWORD", "nexus-demo-password")

# Periodic tasks, synced into django-celery-beat's tables when beat starts; an operator can
# change a schedule in the admin without a deploy.
CELERY_BEAT_SCHEDULE = {
    "flush-expired-tokens": {"task": "tenants.flush_expired_tokens", "schedule": 60 * 60 * 24},
}

# Keys that encrypt stored secrets (webhook secrets, data-source API keys): comma separated
# Fernet keys, the first encrypts. Unset: derived from SECRET_KEY.
ENCRYPTION_KEYS = env_list("ENCRYPTION_KEYS")

# --- Outbound webhooks ----------------------------------------------------------------------
WEBHOOK_RETRY_DELAYS = [float(v) for v in env_list("WEBHOOK_RETRY_DELAYS", "5,25,125")]
WEBHOOK_TIMEOUT_SECONDS = float(env("WEBHOOK_TIMEOUT_SECONDS", "10"))
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 20)
# Failed deliveries in a row after which an endpoint is shown as failing and admins are told.
WEBHOOK_FAILING_AFTER_FAILURES = env_int("WEBHOOK_FAILING_AFTER_FAILURES", 3)
WEBHOOK_REQUIRE_HTTPS = env_bool("WEBHOOK_REQUIRE_HTTPS", not DEBUG)
# Development and tests only: lets webhooks and data sources call private addresses.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
WEBHOOK_SECRET_OVERLAP_HOURS = env_int("WEBHOOK_SECRET_OVERLAP_HOURS", 24)
# CA bundle outbound https (webhooks, data sources) trusts; unset: the default trust store.
# Tests point it at a CA of their own.
OUTBOUND_TLS_CA_FILE = env("OUTBOUND_TLS_CA_FILE", "")

# --- Billing (Stripe) --------------------------------------------------------------------------
# Unset: buying is refused with 503 BILLING_UNAVAILABLE; operators grant credits instead.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", "")
# Only for pointing the stripe library at a stand-in (tests, local development).
STRIPE_API_BASE = env("STRIPE_API_BASE", "")
STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
BILLING_SUCCESS_URL = env("BILLING_SUCCESS_URL", f"{PUBLIC_BASE_URL}/billing?purchase={{purchase_id}}")
BILLING_CANCEL_URL = env("BILLING_CANCEL_URL", f"{PUBLIC_BASE_URL}/billing?cancelled={{purchase_id}}")
BILLING_RECONCILE_AFTER_MINUTES = env_int("BILLING_RECONCILE_AFTER_MINUTES", 15)

# --- ETL -----------------------------------------------------------------------------------------
ETL_BATCH_SIZE = env_int("ETL_BATCH_SIZE", 10000)
ETL_DRIFT_THRESHOLD = float(env("ETL_DRIFT_THRESHOLD", "85"))
ETL_HTTP_TIMEOUT_SECONDS = float(env("ETL_HTTP_TIMEOUT_SECONDS", "30"))
ETL_HTTP_RETRIES = env_int("ETL_HTTP_RETRIES", 5)
ETL_RETRY_BASE_DELAY_SECONDS = float(env("ETL_RETRY_BASE_DELAY_SECONDS", "0.5"))
ETL_RETRY_MAX_DELAY_SECONDS = float(env("ETL_RETRY_MAX_DELAY_SECONDS", "60"))
ETL_REQUIRE_HTTPS = env_bool("ETL_REQUIRE_HTTPS", WEBHOOK_REQUIRE_HTTPS)
# Server-side CSV/RSS paths: an organisation reads only <root>/<its schema>/ of each root.
ETL_LOCAL_ROOTS = env_list("ETL_LOCAL_ROOTS", str(BASE_DIR / ".data" / "etl-files"))
ETL_MAX_FILE_BYTES = env_int("ETL_MAX_FILE_BYTES", 200 * 1024 * 1024)
# One uploaded CSV/RSS file (POST /etl/sources/{id}/file); larger is a 413.
ETL_MAX_UPLOAD_BYTES = env_int("ETL_MAX_UPLOAD_BYTES", 20 * 1024 * 1024)
# An API source that never reports its last page is stopped after this many pages.
ETL_MAX_PAGES = env_int("ETL_MAX_PAGES", 10_000)
# A run processed by a worker proceeds in slices: each stops after this many seconds or API
# pages, commits its checkpoint and queues the rest of the run, so no task holds a worker
# for long and other organisations' runs take turns.
ETL_SLICE_SECONDS = float(env("ETL_SLICE_SECONDS", "60"))
ETL_SLICE_PAGES = env_int("ETL_SLICE_PAGES", 100)
# The soft time limit of one slice's task (the hard one is a minute later): the slice time
# plus room for the request in flight and its retries. A slice stopped here fails the run;
# the next run resumes from the checkpoint.
ETL_SLICE_TIME_LIMIT = env_int("ETL_SLICE_TIME_LIMIT", 600)
# A run over its organisation's concurrent-runs cap stays queued and tries again this often.
ETL_SLOT_RETRY_SECONDS = float(env("ETL_SLOT_RETRY_SECONDS", "5"))
# ... but not for ever: a run that has not started after this long is failed (the next
# scheduled run takes its place), so waiting runs cannot pile up on the shared etl queue.
ETL_SLOT_WAIT_SECONDS = env_int("ETL_SLOT_WAIT_SECONDS", 3600)
# Testing the resume path on the scheduled runs: stop each run the schedule starts after this
# many items. Resume runs (the next run after a failure) and manual runs are never stopped.
ETL_SCHEDULED_FAIL_AFTER = env_int("ETL_SCHEDULED_FAIL_AFTER", 0) or None

# --- Fairness caps (per organisation; an operator overrides them per organisation in the admin)
ORG_MAX_SOURCES = env_int("ORG_MAX_SOURCES", 20)
ORG_MAX_WEBHOOK_ENDPOINTS = env_int("ORG_MAX_WEBHOOK_ENDPOINTS", 10)
ORG_MAX_CONCURRENT_RUNS = env_int("ORG_MAX_CONCURRENT_RUNS", 2)

# --- Rate limits (per organisation: /api/ and costly pages; per address otherwise) ------------
RATE_LIMIT_ENABLED = env_bool("RATE_LIMIT_ENABLED", True)
RATE_LIMIT_WINDOW_SECONDS = env_int("RATE_LIMIT_WINDOW_SECONDS", 900)
RATE_LIMIT_DEFAULT = env_int("RATE_LIMIT_DEFAULT", 100)
# Requests with no organisation (sign-in, token refresh, bad tokens), per client address.
RATE_LIMIT_ANONYMOUS = env_int("RATE_LIMIT_ANONYMOUS", 100)
# Google sign-in (/auth/login and /auth/callback together) and Stripe's webhook, per
# client address: neither has a caller to count against yet.
RATE_LIMIT_SIGNIN = env_int("RATE_LIMIT_SIGNIN", 30)
RATE_LIMIT_STRIPE_WEBHOOK = env_int("RATE_LIMIT_STRIPE_WEBHOOK", 600)
# How many proxies in front of the app append to X-Forwarded-For (0: use REMOTE_ADDR).
RATE_LIMIT_TRUSTED_PROXIES = env_int("RATE_LIMIT_TRUSTED_PROXIES", 0)

# --- AI jobs --------------------------------------------------------------------------------
GEMINI_API_KEY = env("GEMINI_API_KEY", "")
GEMINI_MODEL = env("GEMINI_MODEL", "gemini-2.5-flash")
# Only for pointing the SDK at a stand-in server (tests, local development).
GEMINI_BASE_URL = env("GEMINI_BASE_URL", "")
JOB_COSTS = {"summarize": 10, "analyze": 25}
JOB_MAX_TEXT_CHARS = 20_000
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
JOB_RETRY_DELAY_SECONDS = float(env("JOB_RETRY_DELAY_SECONDS", "5"))
JOB_REQUEUE_AFTER_SECONDS = env_int("JOB_REQUEUE_AFTER_SECONDS", 60)
JOB_RUNNING_TIMEOUT_SECONDS = env_int("JOB_RUNNING_TIMEOUT_SECONDS", 300)
JOB_PROVIDER_TIMEOUT_SECONDS = float(env("JOB_PROVIDER_TIMEOUT_SECONDS", "30"))
JOB_CACHE_TTL_SECONDS = env_int("JOB_CACHE_TTL_SECONDS", 3600)
# The jobs sweep runs this often: it sends due jobs that are not queued (a failed send, a
# retry whose delayed message was lost) and retries jobs whose worker died.
JOB_SWEEP_SECONDS = float(env("JOB_SWEEP_SECONDS", "5"))
# A pending job due this long and still not known to be queued is sent by the sweep (the
# grace lets an on-commit send that is in flight land first).
JOB_RESEND_GRACE_SECONDS = float(env("JOB_RESEND_GRACE_SECONDS", "2"))
# Every worker heartbeats this often; one silent for JOB_WORKER_DEAD_AFTER_SECONDS is dead.
WORKER_HEARTBEAT_SECONDS = float(env("WORKER_HEARTBEAT_SECONDS", "3"))
JOB_WORKER_DEAD_AFTER_SECONDS = env_int("JOB_WORKER_DEAD_AFTER_SECONDS", 15)
# Expires with its period: a sweep that waited behind another is dropped, not stacked.
CELERY_BEAT_SCHEDULE["jobs-sweep"] = {
    "task": "jobs.sweep",
    "schedule": JOB_SWEEP_SECONDS,
    "options": {"expires": JOB_SWEEP_SECONDS},
}
CELERY_BEAT_SCHEDULE["billing-reconcile"] = {"task": "billing.reconcile", "schedule": 300.0}
CELERY_BEAT_SCHEDULE["etl-dispatch-due"] = {"task": "etl.dispatch_due", "schedule": 60.0}
# Beat's schedule triggered from outside, for deployments that scale beat to zero: Cloud
# Scheduler calls POST /internal/periodic/<entry> (an entry above) with an OIDC token Google
# signs for this service account and audience; the endpoint queues what beat would.
# Unset: the endpoint answers 404. Run beat or the scheduler jobs, never both (docs/deploy.md).
PERIODIC_INVOKER = env("PERIODIC_INVOKER", "")
PERIODIC_AUDIENCE = env("PERIODIC_AUDIENCE", f"{PUBLIC_BASE_URL}/internal/periodic")
# Where Google publishes the certificates its OIDC tokens are signed with (tests point it at
# a stand-in).
GOOGLE_OIDC_CERTS_URL = env("GOOGLE_OIDC_CERTS_URL", "https://www.googleapis.com/oauth2/v1/certs")
# Finds runs left `running` by a worker that died (their source's lock is free).
CELERY_BEAT_SCHEDULE["etl-sweep"] = {
    "task": "etl.sweep",
    "schedule": JOB_SWEEP_SECONDS,
    "options": {"expires": JOB_SWEEP_SECONDS},
}
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {"task": "webhooks.sweep", "schedule": 60.0}
# Re-sends the messages of audits with pending items and no batch for two minutes.
CELERY_BEAT_SCHEDULE["audits-sweep"] = {"task": "audits.sweep", "schedule": 60.0}
CELERY_BEAT_SCHEDULE["purge-idempotency-keys"] = {"task": "nexus.purge_idempotency_keys", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["purge-audit-log"] = {"task": "auditlog.purge", "schedule": 60 * 60 * 24}
# Invitation emails whose message a broker outage lost are queued again.
CELERY_BEAT_SCHEDULE["resend-unsent-invitations"] = {
    "task": "tenants.resend_unsent_invitations",
    "schedule": 300.0,
    "options": {"expires": 300},
}

# --- Team access: API keys, invitations, the audit log (docs/specs/team-access.md) ---------------
# Live (unrevoked) API keys an organisation may hold, and how far ahead a key may expire.
ORG_MAX_API_KEYS = env_int("ORG_MAX_API_KEYS", 50)
API_KEY_MAX_DAYS = env_int("API_KEY_MAX_DAYS", 365)
# A key's last use (time and address) is written at most this often.
API_KEY_LAST_USED_EVERY_SECONDS = env_int("API_KEY_LAST_USED_EVERY_SECONDS", 60)
INVITATION_TTL_DAYS = env_int("INVITATION_TTL_DAYS", 7)
ORG_MAX_PENDING_INVITATIONS = env_int("ORG_MAX_PENDING_INVITATIONS", 100)
# Invitation emails go out from this deployment's domain: bounded per organisation and day,
# per invitation, and in pace (a resend waits this long after the last one).
ORG_MAX_INVITATIONS_PER_DAY = env_int("ORG_MAX_INVITATIONS_PER_DAY", 100)
INVITATION_MAX_SENDS = env_int("INVITATION_MAX_SENDS", 5)
INVITATION_RESEND_COOLDOWN_SECONDS = env_int("INVITATION_RESEND_COOLDOWN_SECONDS", 600)
# Audit log events older than this are deleted by the daily purge.
AUDIT_LOG_RETENTION_DAYS = env_int("AUDIT_LOG_RETENTION_DAYS", 365)
AUDIT_LOG_EXPORT_MAX_ROWS = env_int("AUDIT_LOG_EXPORT_MAX_ROWS", 100_000)

# --- Email (invitations) ---------------------------------------------------------------------------
# Any Django email backend: the console in development; in production django-anymail's
# backend for your provider (e.g. anymail.backends.mailgun.EmailBackend) with its settings
# from ANYMAIL_* variables (ANYMAIL_MAILGUN_API_KEY -> ANYMAIL["MAILGUN_API_KEY"]), or
# Django's SMTP backend with the EMAIL_HOST* variables.
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if (DEBUG or TESTING)
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
# The file backend's directory (django.core.mail.backends.filebased.EmailBackend: `make up`).
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", "")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "NexusAPI <no-reply@localhost>")
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): value for name, value in os.environ.items() if name.startswith("ANYMAIL_")
}

# --- Batch audits (docs/specs/audits.md) -------------------------------------------------------
AUDIT_PRICE_PER_ITEM = env_int("AUDIT_PRICE_PER_ITEM", 1)
AUDIT_BATCH_SIZE = env_int("AUDIT_BATCH_SIZE", 20)
AUDIT_MAX_BATCH_SIZE = 100
AUDIT_MAX_ITEMS = env_int("AUDIT_MAX_ITEMS", 100_000)
AUDIT_MAX_UPLOAD_BYTES = env_int("AUDIT_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
AUDIT_MAX_ITEM_CHARS = env_int("AUDIT_MAX_ITEM_CHARS", 10_000)
# Batch messages of one audit queued at once: audits of different organisations take turns.
AUDIT_MAX_IN_FLIGHT = env_int("AUDIT_MAX_IN_FLIGHT", 4)
# The provider account's quota, shared by every worker (audits.quota), and the adaptive
# limit of calls in flight (halved on a 429, one more after AUDIT_CONCURRENCY_RECOVER
# successes).
AUDIT_PROVIDER_RPM = env_int("AUDIT_PROVIDER_RPM", 60)
AUDIT_PROVIDER_TPM = env_int("AUDIT_PROVIDER_TPM", 1_000_000)
# How much of a minute's quota may go at once (the rest follows at the steady rate). A sliding
# minute never overflows the account's quota Q when the two above are at most
# Q x 60 / (60 + AUDIT_PROVIDER_BURST_SECONDS) (108 for Q = 120 and 5 s).
AUDIT_PROVIDER_BURST_SECONDS = float(env("AUDIT_PROVIDER_BURST_SECONDS", "5"))
AUDIT_CONCURRENCY_INITIAL = env_int("AUDIT_CONCURRENCY_INITIAL", 4)
AUDIT_CONCURRENCY_MAX = env_int("AUDIT_CONCURRENCY_MAX", 8)
AUDIT_CONCURRENCY_RECOVER = env_int("AUDIT_CONCURRENCY_RECOVER", 20)
# How long a batch waits for the quota before its message is queued again with a countdown.
AUDIT_QUOTA_MAX_WAIT_SECONDS = float(env("AUDIT_QUOTA_MAX_WAIT_SECONDS", "10"))
# An audit fails when every item of this many batches in a row failed.
AUDIT_FAIL_AFTER_BATCHES = env_int("AUDIT_FAIL_AFTER_BATCHES", 5)
# Models an audit may ask for (the first is the default); the local provider ignores it.
AUDIT_MODELS = env_list("AUDIT_MODELS", GEMINI_MODEL)

# --- Pages ------------------------------------------------------------------------------------
# How often the dashboard refreshes the balance.
DASHBOARD_REFRESH_SECONDS = env_int("DASHBOARD_REFRESH_SECONDS", 30)
