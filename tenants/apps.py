from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Organisations and users"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from tenants.services import user_record_login

        def _record_login(sender, request, user, **kwargs):
            user_record_login(user=user, ip=request.META.get("REMOTE_ADDR") if request else None)

        user_logged_in.connect(_record_login, dispatch_uid="tenants.record_login_ip", weak=False)
