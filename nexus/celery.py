"""The Celery app. Tasks run in the schema they were sent from: tenant-schemas-celery puts
the sender's schema in the `_schema_name` header and switches to it before the task runs,
so a task sent inside an organisation's context can only touch that organisation's data."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from celery.signals import worker_ready, worker_shutdown
from prometheus_client import Counter
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus.settings")

app = CeleryApp("nexus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A send the broker refused (Redis down) is counted, not only logged, so an outage's lost
# enqueues show on a dashboard; the sweeps count what they send again.
ENQUEUE_FAILURES = Counter(
    "nexus_enqueue_failures_total", "Task messages the broker refused (they wait for a sweep)", ["task"]
)
ENQUEUE_RESENDS = Counter(
    "nexus_enqueue_resends_total",
    "Task messages a sweep sent for work that was not queued",
    ["task", "reason"],
)


def send_on_commit(
    task,
    *args,
    countdown: float = 0,
    log_event: str = "task.enqueue_failed",
    on_sent: Callable[[], None] | None = None,
) -> None:
    """Send `task` once the current transaction commits, in the schema that is current
    now. (tenant-schemas-celery reads the schema when the message is sent; by commit time
    the caller may have left the organisation's context, as the Stripe webhook does.) A
    broker outage is logged and counted; the periodic sweeps send what was missed.
    `on_sent` runs in that same schema once the broker has accepted the message (to stamp
    the row as queued), never when the send failed."""
    import structlog
    from django.db import connection, transaction
    from django_tenants.utils import schema_context

    schema = connection.schema_name

    def send() -> None:
        try:
            task.apply_async(args=list(args), countdown=countdown, headers={"_schema_name": schema})
        except Exception:
            ENQUEUE_FAILURES.labels(task=task.name).inc()
            structlog.get_logger(__name__).warning(log_event, task=task.name, args=args, exc_info=True)
            return
        if on_sent is not None:
            with schema_context(schema):
                on_sent()

    transaction.on_commit(send)


# --- Worker heartbeat -------------------------------------------------------------------
# Each worker writes its name and the time to tenants.WorkerHeartbeat every
# WORKER_HEARTBEAT_SECONDS from a thread of its main process, so the jobs sweep can tell a
# job whose worker died (SIGKILL, lost machine) from one that is merely slow, within
# seconds instead of the running-job timeout. A thread, not a task: a busy or stuck task
# queue must not stop the heartbeat, and a solo pool runs tasks in the main thread.
_heartbeat_stop = threading.Event()
# Told apart from an earlier worker of the same name (a restarted container keeps its
# hostname): the restarted worker's heartbeat must not make its predecessor's orphaned jobs
# look alive. Set at import in the worker's main process; prefork children inherit it.
_BOOT_ID = os.urandom(4).hex()


def worker_identity(hostname: str) -> str:
    """The name a worker heartbeats under and stamps on the jobs it claims."""
    return f"{hostname}#{_BOOT_ID}"


def _heartbeat_loop(name: str) -> None:
    import structlog
    from django.conf import settings
    from django.db import close_old_connections, connection
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from tenants.models import WorkerHeartbeat

    log = structlog.get_logger(__name__)
    while not _heartbeat_stop.is_set():
        try:
            with schema_context("public"):
                WorkerHeartbeat.objects.update_or_create(name=name, defaults={"beat_at": timezone.now()})
        except Exception:
            # PostgreSQL down: keep trying; a fresh connection is opened next time.
            log.warning("worker.heartbeat_failed", worker=name, exc_info=True)
            connection.close()
        finally:
            close_old_connections()
        _heartbeat_stop.wait(settings.WORKER_HEARTBEAT_SECONDS)


@worker_ready.connect
def _start_heartbeat(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None)
    if hostname:
        _heartbeat_stop.clear()
        threading.Thread(
            target=_heartbeat_loop, args=(worker_identity(hostname),), name="nexus-heartbeat", daemon=True
        ).start()


@worker_shutdown.connect
def _stop_heartbeat(**kwargs) -> None:
    _heartbeat_stop.set()
