from django.apps import AppConfig


class BillingPublicConfig(AppConfig):
    """The public-schema half of billing: what is known before an organisation is chosen
    (the pack catalogue, Stripe's event log, and which organisation a Stripe session or
    payment belongs to). A separate app because an app's tables exist in every schema it
    is listed for, and a tenant's copy would shadow the public one."""

    name = "billing.public"
    label = "billing_public"
    verbose_name = "Billing catalogue and Stripe events"
    default_auto_field = "django.db.models.BigAutoField"
