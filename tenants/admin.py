"""The operators' console for organisations and users. Creating an organisation goes
through tenants.services so its schema is created exactly as the API would."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db import transaction

# Imported (so registered) before the library's own admin module would be, and unregistered:
# the library's APIKey table is unused (tenants.ApiKey is the one), and keys made there would
# never authenticate.
from rest_framework_api_key import admin as api_key_admin
from rest_framework_api_key.models import APIKey

from auditlog.services import audit_record
from nexus.api.errors import AppError
from tenants import selectors, services
from tenants.models import ApiKey, Invitation, Organisation, Role, TokenFamily, User
from tenants.services import keys

admin.site.unregister(APIKey)


class PersonalFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("company", "Company (email domain)"), ("personal", "Personal")]

    def queryset(self, request, queryset):
        if self.value() == "personal":
            return queryset.filter(email_domain__isnull=True)
        if self.value() == "company":
            return queryset.filter(email_domain__isnull=False)
        return queryset


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "email_domain",
        "plan",
        "is_active",
        "api_rate_limit",
        "member_count",
        "created_at",
    ]
    list_filter = ["plan", "is_active", PersonalFilter]
    search_fields = ["name", "slug", "email_domain"]
    ordering = ["name"]
    readonly_fields = ["id", "slug", "schema_name", "created_at"]
    fields = [
        "id",
        "name",
        "slug",
        "schema_name",
        "email_domain",
        "plan",
        "is_active",
        "api_rate_limit",
        "max_sources",
        "max_webhook_endpoints",
        "max_concurrent_runs",
        "domain_auto_join",
        "created_at",
    ]

    def get_queryset(self, request):
        return selectors.organisations_with_member_counts()

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj) -> int:
        return obj.member_count

    def get_readonly_fields(self, request, obj=None):
        # The domain decides who joins; changing it later would silently move sign-ups.
        return [*self.readonly_fields, "email_domain"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            with transaction.atomic():
                super().save_model(request, obj, form, change)
                if form.changed_data:
                    audit_record(
                        action="organisation.updated",
                        organisation_id=obj.pk,
                        target_type="organisation",
                        target_id=obj.pk,
                        target_label=obj.name,
                        **_form_changes(form, form.changed_data),
                    )
            return
        try:
            created = services.organisation_create(
                name=obj.name, email_domain=obj.email_domain or None, plan=obj.plan
            )
        except AppError as exc:
            messages.error(request, exc.message)
            raise
        operator_set = ["api_rate_limit", "max_sources", "max_webhook_endpoints", "max_concurrent_runs"]
        changed = [name for name in operator_set if getattr(obj, name) != getattr(created, name)]
        if changed:
            for name in changed:
                setattr(created, name, getattr(obj, name))
            created.save(update_fields=changed)
        obj.pk = created.pk
        obj.slug = created.slug
        obj.schema_name = created.schema_name
        obj._state.adding = False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting would orphan a schema full of data; deactivate instead.
        return False


def _plain(value):
    """A form value as JSON holds it (model instances by their id)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(getattr(value, "pk", value))


def _form_changes(form, names) -> dict:
    """audit_record's before and after of the admin form's fields `names`."""
    return {
        "before": {name: _plain(form.initial.get(name)) for name in names},
        "after": {name: _plain(form.cleaned_data.get(name)) for name in names},
    }


@admin.register(ApiKey)
class ApiKeyAdmin(api_key_admin.APIKeyModelAdmin):
    """Operators see every organisation's keys (never a secret: only prefixes are stored) and
    can revoke one; keys are created by organisation admins, on their page or the API."""

    list_display = [
        "prefix",
        "name",
        "organisation",
        "scopes",
        "created",
        "last_used_at",
        "expiry_date",
        "revoked",
    ]
    list_filter = ["revoked", "created"]
    search_fields = ["name", "prefix", "organisation__name", "organisation__slug"]
    list_select_related = ["organisation", "created_by"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in ApiKey._meta.fields if field.name != "hashed_key"]

    def get_fields(self, request, obj=None):
        return [field.name for field in ApiKey._meta.fields if field.name != "hashed_key"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Revoke the selected keys (at once)")
    def revoke(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked=False).select_related("organisation"):
            keys.api_key_revoke(org=key.organisation, key_id=key.pk)
            revoked += 1
        messages.success(request, f"Revoked {revoked} key(s).")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organisation", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role"]
    search_fields = ["email", "organisation__name", "organisation__slug"]
    list_select_related = ["organisation"]
    exclude = ["nonce"]  # a part of the link's signature: never shown

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ["email", "organisation", "role"]


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    add_form = UserCreationForm
    form = UserEditForm
    list_display = ["email", "name", "organisation", "role", "is_active", "is_staff", "date_joined"]
    list_filter = ["role", "is_active", "is_staff", "organisation"]
    search_fields = ["email", "name", "organisation__name", "organisation__slug"]
    ordering = ["email"]
    list_select_related = ["organisation"]
    readonly_fields = ["id", "date_joined", "last_login", "last_login_ip", "token_version"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password", "name"]}),
        ("Organisation", {"fields": ["organisation", "role"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Activity", {"fields": ["last_login", "last_login_ip", "date_joined", "token_version"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "organisation", "role", "password1", "password2"]}),
    ]

    actions = ["sign_out_everywhere"]

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            if change and "is_active" in form.changed_data and not obj.is_active:
                # An operator's lock: no invitation may lift it (only a removal's may).
                obj.removed_at = None
            super().save_model(request, obj, form, change)
            lost_admin = form.initial.get("role") == Role.ADMIN and (
                obj.role != Role.ADMIN
                or not obj.is_active
                or str(obj.organisation_id or "") != str(form.initial.get("organisation") or "")
            )
            if change and lost_admin:
                services.member_delegations_withdraw(user=obj, why="changed_by_operator")
            recorded = [
                name
                for name in ("organisation", "role", "is_active", "is_staff")
                if name in form.changed_data
            ]
            if change and recorded:
                # Moving a user from one organisation to another changes both: each log has it.
                concerned = [str(o) for o in (obj.organisation_id, form.initial.get("organisation")) if o]
                action = "member.role_changed" if recorded == ["role"] else "member.updated_by_operator"
                for organisation_id in list(dict.fromkeys(concerned)) or [None]:
                    audit_record(
                        action=action,
                        organisation_id=organisation_id,
                        target_type="member",
                        target_id=obj.pk,
                        target_label=obj.email,
                        **_form_changes(form, recorded),
                    )
        # Deactivating is how an operator locks an account: its tokens and sessions must end
        # now, not when they expire.
        if change and "is_active" in form.changed_data and not obj.is_active:
            services.user_sign_out_everywhere(user=obj, reason=TokenFamily.RevokedReason.DEACTIVATED)

    @admin.action(description="Sign out everywhere (end every session and API token)")
    def sign_out_everywhere(self, request, queryset):
        for user in queryset:
            services.user_sign_out_everywhere(user=user)
        messages.success(request, f"Signed out {queryset.count()} user(s) everywhere.")

    def has_delete_permission(self, request, obj=None) -> bool:
        # Users are referenced from every organisation's jobs and ledger; deactivate instead.
        return False
