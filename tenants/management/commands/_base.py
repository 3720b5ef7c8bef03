"""Shared plumbing for the operator commands: application errors become a clear message
on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys

from django.conf import settings
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


class DemoCommand(OperatorCommand):
    """A command that creates demo data: logins sharing one published password and free
    credits. Only on a development system (DEBUG): anywhere else they would be accounts
    anyone can sign in to. `--skip-unless-debug` (docker compose's seed job) says so and
    does nothing instead of failing."""

    def add_arguments(self, parser):
        parser.add_argument(
            "--skip-unless-debug",
            action="store_true",
            help="Outside DEBUG, do nothing (and say so) instead of refusing.",
        )

    def execute(self, *args, **options):
        if not settings.DEBUG:
            message = (
                "DEBUG is off: no demo data is created here (its logins share a published "
                "password). Create organisations and users with create_org and create_user."
            )
            if options.get("skip_unless_debug"):
                # Before BaseCommand.execute, which is what points self.stderr at options["stderr"].
                (options.get("stderr") or sys.stderr).write(message + "\n")
                return None
            raise CommandError(message)
        return super().execute(*args, **options)


def _flatten(exc: AppError) -> str:
    fields = exc.details.get("fields") if exc.details else None
    if not fields:
        return exc.message
    problems = "; ".join(f"{name}: {' '.join(map(str, msgs))}" for name, msgs in fields.items())
    return f"{exc.message} ({problems})"
