from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from etl.models import DataSource, RunTrigger
from etl.services import etl_run_source
from nexus.api.errors import AppError
from tenants.management.commands._base import OperatorCommand
from tenants.selectors import organisations_active


class Command(OperatorCommand):
    help = "Run one data source now and print the run. --fail-after N stops it on purpose after N items."

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True, help="Data source id.")
        parser.add_argument("--org", help="Organisation slug (found automatically when omitted).")
        parser.add_argument("--fail-after", type=int)
        parser.add_argument(
            "--trigger", choices=[RunTrigger.MANUAL, RunTrigger.RESUME], default=RunTrigger.MANUAL
        )

    def _find(self, source_id: str, slug: str | None):
        orgs = [self.organisation(slug)] if slug else organisations_active()
        for org in orgs:
            with tenant_context(org):
                try:
                    source = DataSource.objects.filter(pk=source_id).first()
                except Exception:
                    raise CommandError(f"{source_id!r} is not a data source id.") from None
                if source is not None:
                    return org, source
        raise CommandError(f"No data source {source_id!r}" + (f" in {slug}." if slug else "."))

    def handle(self, *args, source, org, fail_after, trigger, **options):
        if fail_after is not None and fail_after < 1:
            raise CommandError("--fail-after must be at least 1.")
        organisation, data_source = self._find(source, org)
        with tenant_context(organisation):
            try:
                run = etl_run_source(source=data_source, trigger=trigger, fail_after=fail_after)
            except AppError as exc:
                raise CommandError(exc.message) from exc
        self.stdout.write(
            f"run {run.pk} {run.status} ({run.trigger}) in {run.duration_ms} ms: fetched {run.fetched}, "
            f"inserted {run.inserted}, updated {run.updated}, skipped {run.skipped}, "
            f"quarantined {run.quarantined}, drift warnings {run.drift_warnings}"
        )
        self.stdout.write(f"checkpoint {run.checkpoint_before} -> {run.checkpoint_after}")
        if run.error:
            self.stdout.write(f"error: {run.error}")
        if run.status == "failed":
            raise CommandError("The run failed; the next run resumes from the checkpoint above.")
