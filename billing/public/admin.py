from django.contrib import admin

from billing.public.models import CreditPack, StripeEvent


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    list_display = ["name", "credits", "price_cents", "currency", "active", "sort_order"]
    list_editable = ["active", "sort_order"]
    list_filter = ["active", "currency"]


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "type", "organisation_id", "outcome", "received_at"]
    list_filter = ["type"]
    search_fields = ["event_id", "organisation_id"]
    readonly_fields = ["event_id", "type", "organisation_id", "outcome", "received_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
