"""Operators read every organisation's audit log here; nobody adds, changes or deletes an
event (the database would refuse the last two anyway)."""

from __future__ import annotations

from django.contrib import admin

from auditlog.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "organisation_id",
        "actor_label",
        "action",
        "target_type",
        "target_label",
        "ip",
    )
    list_filter = ("actor_kind", "action")
    # organisation_id__exact compares as text: a search term that is not a UUID matches nothing
    # instead of failing the UUID conversion.
    search_fields = ("organisation_id__exact", "actor_label", "action", "target_id", "target_label")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    list_per_page = 100
    show_full_result_count = False  # counting millions of rows on every page is slow

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in AuditEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
