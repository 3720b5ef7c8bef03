from tenants.management.commands._base import OperatorCommand
from tenants.models import Role
from tenants.services import user_create


class Command(OperatorCommand):
    help = "Create a user in an organisation. Without --password the user signs in with Google."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--password")
        parser.add_argument("--name", default="")

    def handle(self, *args, email, org, role, password, name, **options):
        user = user_create(
            email=email, organisation=self.organisation(org), role=role, name=name, password=password
        )
        self.stdout.write(f"Created {user.role} {user.email} in {org}.")
