import getpass

from django_tenants.utils import tenant_context

from billing.services import credits_grant
from tenants.management.commands._base import OperatorCommand


class Command(OperatorCommand):
    help = "Grant credits to an organisation; writes a grant row naming the operator."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--amount", required=True, type=int)
        parser.add_argument("--reason", required=True)
        parser.add_argument("--operator", help="Who is granting (default: the OS user).")

    def handle(self, *args, org, amount, reason, operator, **options):
        organisation = self.organisation(org)
        operator = operator or getpass.getuser()
        with tenant_context(organisation):
            row = credits_grant(amount=amount, reason=reason, actor_label=f"operator:{operator}")
        self.stdout.write(
            f"Granted {row.amount} credits to {organisation.slug}; balance is now {row.balance_after}."
        )
