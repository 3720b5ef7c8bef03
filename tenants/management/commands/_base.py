"""Shared plumbing for the operator commands: application errors become a clear message
on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from nexus.api.errors import AppError
from tenants.models import Organisation
from tenants.selectors import organisation_by_slug


class OperatorCommand(BaseCommand):
    def execute(self, *args, **options):
        connection.set_schema_to_public()
        try:
            return super().execute(*args, **options)
        except AppError as exc:
            raise CommandError(_flatten(exc)) from exc

    def organisation(self, slug: str) -> Organisation:
        org = organisation_by_slug(slug=slug)
        if org is None:
            raise CommandError(f"No organisation with slug {slug!r}.")
        if not org.is_active:
            raise CommandError(f"Organisation {slug!r} is deactivated.")
        return org


def _flatten(exc: AppError) -> str:
    fields = exc.details.get("fields") if exc.details else None
    if not fields:
        return exc.message
    problems = "; ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in fields.items())
    return f"{exc.message} ({problems})"
