"""Show retries and the exact refund end to end, through the running worker."""

import getpass
import time

from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from billing.selectors import credits_balance
from billing.services import credits_adjust
from jobs.models import JobEvent, JobStatus, JobType
from jobs.selectors import job_get
from jobs.services import job_create
from tenants.management.commands._base import OperatorCommand
from tenants.models import Role
from tenants.selectors import member_list

DEMO_TEXT = (
    "NexusAPI retries transient provider failures. This job runs on a provider that fails every "
    "time, so it is retried until its attempts run out, then failed and refunded."
)


class Command(OperatorCommand):
    help = (
        "Set the organisation's balance to 100, run a job that fails on every attempt through "
        "the running worker, and show its retries, failure and refund."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait for the job.")

    def say(self, message: str) -> None:
        self.stdout.write(f"{time.strftime('%H:%M:%S')}  {message}")

    def handle(self, *args, org, timeout, **options):
        organisation = self.organisation(org)
        admin = member_list(org=organisation, roles=[Role.ADMIN]).order_by("date_joined").first()
        if admin is None:
            raise CommandError(f"Organisation {org!r} has no admin to run the job as.")
        with tenant_context(organisation):
            current = credits_balance()
            if current != 100:
                credits_adjust(
                    amount=100 - current,
                    reason="demo_failed_job: balance set to 100",
                    actor_label=f"operator:{getpass.getuser()}",
                )
            self.say(f"balance {credits_balance()}")
            job = job_create(user=admin, job_type=JobType.SUMMARIZE, text=DEMO_TEXT, provider="always-fails")
            self.say(f"job {job.pk} created ({job.cost} credits), balance {credits_balance()}")
            self._follow(job.pk, timeout)
            job = job_get(job_id=job.pk)
            self.say(f"job {job.status}, attempt_count {job.attempt_count}, error: {job.error_message}")
            self.say(f"balance {credits_balance()}")
            self.stdout.write("ledger rows of this job:")
            for row in CreditTransaction.objects.filter(job_id=job.pk).order_by("sequence"):
                self.stdout.write(
                    f"  #{row.sequence} {row.kind:<9} {row.amount:+d}  balance after {row.balance_after}  "
                    f"job {row.job_id}"
                )
            if job.status != JobStatus.FAILED:
                raise CommandError("The job did not finish in time; is the worker running (make up)?")

    def _follow(self, job_id, timeout: float) -> None:
        seen = 0
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            events = list(JobEvent.objects.filter(job_id=job_id).order_by("created_at", "id"))
            for event in events[seen:]:
                detail = f": {event.error}" if event.error else ""
                stamp = event.created_at.strftime("%H:%M:%S.%f")[:-3]
                self.stdout.write(
                    f"{stamp}  {event.kind:<15} attempt {event.attempt}  {event.message}{detail}"
                )
                if event.kind == "retry_scheduled":
                    self.say(f"balance {credits_balance()} while the job waits to retry")
            seen = len(events)
            job = job_get(job_id=job_id)
            if job.status in (JobStatus.FAILED, JobStatus.COMPLETED):
                return
            if job.attempt_count == 0 and time.monotonic() - started > 15:
                raise CommandError(
                    "No worker picked the job up in 15 s. Start the system with `make up` "
                    "(or `celery -A nexus worker`) and run this again."
                )
            time.sleep(0.25)
