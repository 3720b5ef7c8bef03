from django.conf import settings

from tenants.management.commands._base import DemoCommand
from tenants.models import Role
from tenants.selectors import organisation_by_email_domain, user_by_email
from tenants.services import organisation_create, token_pair_issue, user_create

DEMO_ORGANISATIONS = [
    ("Acme Corp", "acme.test"),
    ("Globex", "globex.test"),
]


class Command(DemoCommand):
    help = (
        "Create two demo organisations with an admin and a member each (again is harmless: "
        "existing ones are reused) and print their logins and access tokens. DEBUG only."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--no-tokens",
            action="store_true",
            help="Print the logins only (for logs that others read, such as a container's).",
        )

    def handle(self, *args, no_tokens=False, **options):
        password = settings.DEMO_PASSWORD
        for name, domain in DEMO_ORGANISATIONS:
            org = organisation_by_email_domain(domain=domain) or organisation_create(
                name=name, email_domain=domain
            )
            self.stdout.write(f"{org.name} (slug {org.slug})")
            for role in (Role.ADMIN, Role.MEMBER):
                email = f"{role}@{domain}"
                user = user_by_email(email=email) or user_create(
                    email=email, organisation=org, role=role, name=f"{name} {role}", password=password
                )
                self.stdout.write(f"  {role:<6} {email}  password: {password}")
                if not no_tokens:
                    self.stdout.write(f"         token: {token_pair_issue(user=user).access}")
