"""The Celery app. Tasks run in the schema they were sent from: tenant-schemas-celery puts
the sender's schema in the `_schema_name` header and switches to it before the task runs,
so a task sent inside an organisation's context can only touch that organisation's data."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus.settings")

app = CeleryApp("nexus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def send_on_commit(task, *args, countdown: float = 0, log_event: str = "task.enqueue_failed") -> None:
    """Send `task` once the current transaction commits, in the schema that is current
    now. (tenant-schemas-celery reads the schema when the message is sent; by commit time
    the caller may have left the organisation's context, as the Stripe webhook does.) A
    broker outage is logged; the periodic sweeps send what was missed."""
    import structlog
    from django.db import connection, transaction

    schema = connection.schema_name

    def send() -> None:
        try:
            task.apply_async(args=list(args), countdown=countdown, headers={"_schema_name": schema})
        except Exception:
            structlog.get_logger(__name__).warning(log_event, task=task.name, args=args, exc_info=True)

    transaction.on_commit(send)
