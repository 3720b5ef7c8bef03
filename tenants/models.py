"""Organisations (the tenants) and their users. Both live in the public schema.

An organisation owns one PostgreSQL schema holding all its data; users are found before a
schema is chosen, so they stay in `public` with a foreign key to their organisation.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_tenants.models import TenantMixin
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from tenants.apikeys import KEY_PREFIX, OrganisationKeyGenerator
from tenants.managers import UserManager


def default_rate_limit() -> int:
    return settings.RATE_LIMIT_DEFAULT


class Plan(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


class Organisation(TenantMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    # The company email domain whose users join this organisation; null for a personal
    # organisation (free-mail users each get one of their own).
    email_domain = models.CharField(max_length=253, unique=True, null=True, blank=True)
    # Whether Google Workspace users of email_domain join by signing in (else: invitation only).
    domain_auto_join = models.BooleanField(default=True)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.FREE)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Requests per RATE_LIMIT_WINDOW_SECONDS (15 minutes) across all of the organisation's
    # users and tokens; operators raise it in the admin.
    api_rate_limit = models.PositiveIntegerField(
        default=default_rate_limit, validators=[MinValueValidator(1)]
    )
    # Fairness caps set by an operator for this organisation; empty means the deployment's
    # default (ORG_MAX_SOURCES, ORG_MAX_WEBHOOK_ENDPOINTS, ORG_MAX_CONCURRENT_RUNS).
    max_sources = models.PositiveIntegerField(
        null=True, blank=True, help_text="Data sources it may have. Empty: ORG_MAX_SOURCES."
    )
    max_webhook_endpoints = models.PositiveIntegerField(
        null=True, blank=True, help_text="Webhook endpoints it may have. Empty: ORG_MAX_WEBHOOK_ENDPOINTS."
    )
    max_concurrent_runs = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="ETL runs processed at once; more wait queued. Empty: ORG_MAX_CONCURRENT_RUNS.",
    )

    # Never drop an organisation's data as a side effect of deleting a row by accident.
    auto_drop_schema = False
    auto_create_schema = True

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(email_domain=Lower("email_domain")),
                name="organisation_email_domain_lowercase",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_personal(self) -> bool:
        return self.email_domain is None

    def create_schema(self, check_if_exists=False, sync_schema=True, verbosity=1):
        # Cloning the migrated template schema is several times faster than running every
        # migration for each new organisation; schema_template keeps the template current.
        from tenants.schema_template import schema_create_from_template

        schema_create_from_template(self.schema_name)


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=150, blank=True)
    # Null only for operators (staff without an organisation) and removed members.
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        related_name="users",
        null=True,
        blank=True,
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(auto_now_add=True)
    # Set when an organisation's admin removed them (member_remove): the one kind of inactive
    # account an invitation may bring back. An operator's lock (deactivation in the admin)
    # clears it, so no invitation can undo that.
    removed_at = models.DateTimeField(null=True, blank=True)
    # Where the user last signed in from: shown to operators investigating an account.
    last_login_ip = models.GenericIPAddressField(null=True, blank=True)
    # Carried in every JWT as `ver` and mixed into the session hash: bumping it (sign out
    # everywhere, removal, deactivation) ends every token and session of the user at once,
    # checked on the user row each request loads anyway.
    token_version = models.PositiveIntegerField(default=0)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        indexes = [models.Index(fields=["organisation", "role"], name="user_org_role_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(email=Lower("email")), name="user_email_lowercase"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_org_admin(self) -> bool:
        return self.role == Role.ADMIN

    def _get_session_auth_hash(self, secret=None):
        # Django ends a session whose stored hash no longer matches this one. Version 0 keeps
        # Django's own hash, so sessions from before token versions existed stay valid.
        if not self.token_version:
            return super()._get_session_auth_hash(secret=secret)
        return salted_hmac(
            "tenants.User.get_session_auth_hash",
            f"{self.password}\x00{self.token_version}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()


class TokenFamily(models.Model):
    """Every refresh token rotated from one sign-in. Each JWT carries its family's id as
    `fam`; revoking the family ends all of them (and the access tokens issued with them),
    which is how a replayed refresh token ends the session it was stolen from."""

    class RevokedReason(models.TextChoices):
        LOGOUT = "logout", "Logged out"
        REUSE = "reuse", "A rotated refresh token was used again"
        SIGN_OUT_EVERYWHERE = "sign_out_everywhere", "Signed out everywhere"
        REMOVED = "removed", "Removed from the organisation"
        LEFT = "left", "Left the organisation"
        DEACTIVATED = "deactivated", "Deactivated by an operator"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="token_families")
    created_at = models.DateTimeField(auto_now_add=True)
    # When the family's newest refresh token expires: past it, nothing of the family can be
    # used and the row is flushed.
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=30, choices=RevokedReason.choices, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "revoked_at"], name="tokenfamily_user_revoked_idx"),
            models.Index(fields=["expires_at"], name="tokenfamily_expires_idx"),
        ]

    def __str__(self) -> str:
        return f"token family {self.pk} of {self.user_id}"


class WorkerHeartbeat(models.Model):
    """The last sign of life of a Celery worker (public schema: workers serve every
    organisation). Kept in PostgreSQL, not Redis, so that a Redis outage does not make every
    running job look orphaned; the jobs sweep reads it to find jobs whose worker died."""

    name = models.CharField(max_length=255, primary_key=True)
    beat_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%H:%M:%S}"


class ApiKeyManager(BaseAPIKeyManager):
    key_generator = OrganisationKeyGenerator()

    def assign_key(self, obj: ApiKey) -> str:
        # The library's id is "<prefix>.<hash>"; ours is a UUID, so the hash never travels
        # in a URL or a list. Only the prefix and the hash are stored.
        key, prefix, hashed_key = self.key_generator.generate()
        obj.prefix = prefix
        obj.hashed_key = hashed_key
        return key


class ApiKey(AbstractAPIKey):
    """An organisation's API key (docs/specs/team-access.md). The secret is shown once;
    the row holds its prefix and SHA-512 hash. Public schema: it is found before the
    organisation's schema is chosen."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    prefix = models.CharField(max_length=len(KEY_PREFIX) + 8, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="api_keys")
    scopes = ArrayField(models.CharField(max_length=32))
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by_label = models.CharField(max_length=300, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = ApiKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        indexes = [models.Index(fields=["organisation", "revoked"], name="apikey_org_revoked_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def status(self) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if self.has_expired else "active"


class Invitation(models.Model):
    """An invitation to join an organisation with a role (docs/specs/team-access.md). The
    emailed link signs (id, nonce); resending rotates the nonce, so only the newest link
    works, once, until expires_at."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    nonce = models.CharField(max_length=32)
    sent_count = models.PositiveIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_send_error = models.CharField(max_length=300, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "email"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_pending_per_address",
            ),
            models.CheckConstraint(
                condition=models.Q(email=Lower("email")), name="invitation_email_lowercase"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.organisation_id}"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"
