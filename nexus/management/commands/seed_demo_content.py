"""Give the demo organisations something to work with: credits and the sample data sources,
whose first runs are queued at once (as the scheduler would, so the next ones follow their
schedule). Running it again changes nothing."""

from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from billing.services import credits_grant
from etl.models import DataSource
from etl.samples import ARTICLES_CSV_MAPPING, FEED_MAPPING, sample_source_create
from etl.services import etl_dispatch_due
from tenants.management.commands._base import DemoCommand
from tenants.management.commands.seed_demo import DEMO_ORGANISATIONS
from tenants.selectors import organisation_by_email_domain

DEMO_CREDITS = 500


class Command(DemoCommand):
    help = (
        "Grant the demo organisations 500 credits and connect the sample data sources, queueing "
        "their first runs (once). DEBUG only."
    )

    def handle(self, *args, **options):
        for _name, domain in DEMO_ORGANISATIONS:
            org = organisation_by_email_domain(domain=domain)
            if org is None:
                self.stderr.write(f"No demo organisation for {domain}; run seed_demo first.")
                continue
            with tenant_context(org):
                if not CreditTransaction.objects.exists():
                    credits_grant(
                        amount=DEMO_CREDITS, reason="demo credits", actor_label="operator:seed_demo_content"
                    )
                if not DataSource.objects.exists():
                    # Uploaded like any organisation's own files, into its own storage location.
                    sample_source_create(
                        name="Sample articles (CSV)",
                        kind="csv",
                        sample="articles.csv",
                        field_mapping=ARTICLES_CSV_MAPPING,
                        schedule_minutes=60,
                    )
                    sample_source_create(
                        name="Sample feed (RSS)",
                        kind="rss",
                        sample="feed.xml",
                        field_mapping=FEED_MAPPING,
                        schedule_minutes=60,
                    )
                    # Ingested within seconds (by the etl worker), not at beat's next dispatch.
                    etl_dispatch_due()
                sources = DataSource.objects.count()
                balance = (
                    CreditTransaction.objects.order_by("-sequence")
                    .values_list("balance_after", flat=True)
                    .first()
                )
            self.stdout.write(f"{org.slug}: {balance or 0} credits, {sources} data sources")
