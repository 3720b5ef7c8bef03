"""The user manager Django's auth needs. Organisation-scoped reads go through
tenants.selectors, never through this manager directly."""

from __future__ import annotations

from django.contrib.auth.base_user import BaseUserManager


def normalize_email_address(email: str) -> str:
    # The whole address is compared case-insensitively: Ann@Acme.com and ann@acme.com are
    # one person, so one account.
    return (email or "").strip().lower()


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        return self.get(**{self.model.USERNAME_FIELD: normalize_email_address(username)})

    def create_user(self, email, password=None, **extra_fields):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=normalize_email_address(email), **extra_fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra_fields)
