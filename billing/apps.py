from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Credits and billing"
    default_auto_field = "django.db.models.BigAutoField"
