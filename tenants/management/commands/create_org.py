from tenants.management.commands._base import OperatorCommand
from tenants.models import Plan
from tenants.services import organisation_create


class Command(OperatorCommand):
    help = "Create an organisation and its schema. Prints the new organisation's slug last."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--domain", help="Company email domain whose Google users join it.")
        parser.add_argument("--plan", default=Plan.FREE, choices=Plan.values)

    def handle(self, *args, name, domain, plan, **options):
        org = organisation_create(name=name, email_domain=domain, plan=plan)
        self.stderr.write(f"Created organisation {org.name} (schema {org.schema_name}).")
        self.stdout.write(org.slug)
