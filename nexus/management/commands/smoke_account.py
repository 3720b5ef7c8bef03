"""The organisation and admin the smoke test (scripts/smoke.py) runs as, made ready for a
run: created the first time, credits topped up, its rate-limit window emptied (the smoke
test ends by spending it to see the 429), and a 15-minute access token printed last.

A deployment's smoke test runs as this organisation, never as a customer's: it creates and
deletes data sources and webhook endpoints and exhausts its own rate limit on purpose."""

from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from billing.selectors import credits_balance
from billing.services import credits_grant
from nexus.ratelimit import organisation_window_reset
from tenants.management.commands._base import OperatorCommand
from tenants.models import Role
from tenants.selectors import organisation_by_email_domain, user_by_email
from tenants.services import organisation_create, token_pair_issue, user_create

SMOKE_CREDITS = 100
SMOKE_ORGANISATION_NAME = "Smoke test"


class Command(OperatorCommand):
    help = (
        "Create (once) the smoke-test organisation and its admin, top its credits up to "
        f"{SMOKE_CREDITS}, reset its rate-limit window, and print an access token for it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--domain", default="smoke.test", help="The smoke organisation's email domain.")

    def handle(self, *args, domain, **options):
        email = f"smoke-admin@{domain}"
        org = organisation_by_email_domain(domain=domain)
        if org is None:
            org = organisation_create(name=SMOKE_ORGANISATION_NAME, email_domain=domain)
        elif org.name != SMOKE_ORGANISATION_NAME or org.users.exclude(email=email).exists():
            # A customer's organisation: never join it, fund it or reset its limits.
            raise CommandError(
                f"{domain} belongs to the organisation {org.slug!r}, which is not the smoke test's: "
                "choose a domain of its own (--domain smoke.example.com)."
            )
        user = user_by_email(email=email) or user_create(
            email=email, organisation=org, role=Role.ADMIN, name="Smoke test"
        )
        if user.organisation_id != org.pk or user.role != Role.ADMIN:
            raise CommandError(f"{email} is not an admin of {org.slug}; refusing to use it.")
        with tenant_context(org):
            balance = credits_balance()
            if balance < SMOKE_CREDITS:
                credits_grant(
                    amount=SMOKE_CREDITS - balance, reason="smoke test", actor_label="operator:smoke_account"
                )
        organisation_window_reset(org)
        credits = max(balance, SMOKE_CREDITS)
        self.stderr.write(f"Smoke organisation {org.slug}, admin {email}, {credits} credits.")
        self.stdout.write(token_pair_issue(user=user).access)
