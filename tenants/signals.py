"""Sign-ins and failed sign-ins, whatever the way in (the password form, Google, the
admin's sign-in which is the same form): Django's signals, recorded by tenants.services."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_login_failed

from auditlog.middleware import client_ip
from tenants.services import user_record_login, user_record_sign_in_failure


def _signed_in(sender, request, user, **kwargs) -> None:
    method = (
        "google"
        if getattr(user, "backend", "").startswith("allauth") and _via_google(request)
        else "password"
    )
    user_record_login(user=user, ip=client_ip(request) if request else None, method=method)


def _via_google(request) -> bool:
    return bool(request) and request.path.startswith("/auth/callback")


def _sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    # Django passes the credentials with the password already masked; only the address is kept.
    user_record_sign_in_failure(
        email=str(credentials.get("email") or credentials.get("username") or ""),
        reason="wrong_credentials",
        method="password",
    )


def connect() -> None:
    user_logged_in.connect(_signed_in, dispatch_uid="tenants.record_sign_in", weak=False)
    user_login_failed.connect(_sign_in_failed, dispatch_uid="tenants.record_sign_in_failure", weak=False)
