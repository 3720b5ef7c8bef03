from django.core.management.base import BaseCommand

from tenants.schema_template import template_schema_name, template_sync


class Command(BaseCommand):
    help = (
        "Migrate the template schema new organisations are cloned from. Run after "
        "migrate_schemas on every deploy."
    )

    def handle(self, *args, **options):
        changed = template_sync(verbosity=max(0, options["verbosity"] - 1))
        state = "updated" if changed else "already current"
        self.stdout.write(f"Template schema {template_schema_name()} {state}.")
