"""Write (or check) the committed OpenAPI snapshot of a frozen API version."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from drf_spectacular.generators import SchemaGenerator

from nexus.openapi_compat import breaking_changes


def current_document(version: str) -> dict:
    document = SchemaGenerator(api_version=version).get_schema(request=None, public=True)
    return json.loads(json.dumps(document, sort_keys=True, default=str))


def snapshot_path(version: str) -> Path:
    return Path(settings.BASE_DIR) / "docs" / "openapi" / f"{version}.json"


class Command(BaseCommand):
    help = "Write docs/openapi/<version>.json, or with --check list changes that would break its clients."

    def add_arguments(self, parser):
        parser.add_argument("--api-version", default="v1")
        parser.add_argument("--check", action="store_true")

    def handle(self, *args, api_version, check, **options):
        path = snapshot_path(api_version)
        document = current_document(api_version)
        if check:
            problems = breaking_changes(json.loads(path.read_text()), document)
            if problems:
                raise CommandError("Breaking changes to " + api_version + ":\n  " + "\n  ".join(problems))
            self.stdout.write(f"{api_version}: no breaking changes against {path.name}")
            return
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        self.stdout.write(f"wrote {path}")
