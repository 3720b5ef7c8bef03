from django.core.management.base import CommandError

from tenants.management.commands._base import OperatorCommand
from tenants.selectors import user_by_email
from tenants.services import token_pair_issue


class Command(OperatorCommand):
    help = "Print an access token (15 minutes) for a user, and nothing else."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)

    def handle(self, *args, email, **options):
        user = user_by_email(email=email)
        if user is None:
            raise CommandError(f"No user with email {email!r}.")
        self.stdout.write(token_pair_issue(user=user).access)
