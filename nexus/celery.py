"""The Celery app. Tasks run in the schema they were sent from: tenant-schemas-celery puts
the sender's schema in the `_schema_name` header and switches to it before the task runs,
so a task sent inside an organisation's context can only touch that organisation's data."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from celery.exceptions import NotRegistered
from celery.signals import worker_ready, worker_shutdown
from celery.worker.consumer import Consumer
from prometheus_client import Counter
from tenant_schemas_celery.app import CeleryApp
from tenant_schemas_celery.task import TenantTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus.settings")

T = TypeVar("T")


def wait_for_database(call: Callable[[], T], *, what: str) -> T:
    """`call()`, tried again while the database is unreachable, for at most
    DATABASE_OUTAGE_WAIT_SECONDS (backing off from 0.5 s to 5 s), then the error is raised.

    For the steps of a task that must not be dropped by a database outage: a task that
    failed on the outage would be acknowledged and its work left for a sweep a minute
    later. Every step wrapped in it is a conditional transition (a claim, a completion), so
    trying it again cannot do the work twice; the broken connection is closed first."""
    import structlog
    from django.conf import settings
    from django.db import InterfaceError, OperationalError, connections

    deadline = time.monotonic() + settings.DATABASE_OUTAGE_WAIT_SECONDS
    delay = 0.5
    while True:
        try:
            return call()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            structlog.get_logger(__name__).warning(
                "database.unavailable", waiting_for=what, retry_in_s=delay, error=type(exc).__name__
            )
            for connection in connections.all(initialized_only=True):
                connection.close_if_unusable_or_obsolete()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class NexusTask(TenantTask):
    """tenant-schemas-celery's task, whose switch to the sender's schema waits out a
    database outage: the switch runs in a signal handler whose errors Celery only logs, so
    a failed lookup would leave the task running in the public schema."""

    @classmethod
    def get_tenant_for_schema(cls, schema_name):
        return wait_for_database(
            lambda: super(NexusTask, cls).get_tenant_for_schema(schema_name), what="task schema"
        )


def reconnecting_steadily(conn):
    """`conn` (a kombu Connection), whose ensure_connection() tries again every
    BROKER_RECONNECT_SECONDS instead of backing off to 30 s: a worker or beat reconnects
    within seconds of the broker's return however long it was away."""
    from django.conf import settings

    every = settings.BROKER_RECONNECT_SECONDS
    conn.ensure_connection = functools.partial(
        conn.ensure_connection, interval_start=every, interval_step=0, interval_max=every
    )
    return conn


def _nowhere_to_send(*args, **kwargs) -> None:
    """The ack or reject of a message whose connection was lost: there is nothing to tell."""


class NexusConsumer(Consumer):
    """Celery's consumer, kept alive when the broker goes away with messages unacknowledged.

    With Redis, Celery 5.7 exits ("Unrecoverable error: AttributeError") when a worker
    holding acks-late messages loses the broker: the lost connection is collected (which
    detaches its transport), and then anything that reaches that connection's channel, its
    close handing the unacknowledged messages back or the ack of a task that finishes
    during the outage or after the reconnect, fails on the detached transport. Those
    messages cannot be acknowledged or handed back anyway: the broker that delivered them
    is gone, and either kept them (it delivers them again after the visibility timeout, and
    the claim finds the job done) or lost them (the sweeps send the work again from the
    database). So the lost channel's acks and rejects go nowhere, the close is finished
    here, and the consumer reconnects as Celery intends.

    It also reconnects every BROKER_RECONNECT_SECONDS while the broker is away, where
    Celery backs off 2, 4, 6 ... 30 s: after a 30 s outage a worker sat idle for up to 12 s
    with the broker back and its queue filling."""

    def ensure_connected(self, conn):
        return super().ensure_connected(reconnecting_steadily(conn))

    def on_connection_error_after_connected(self, exc):
        channel = getattr(self.task_consumer, "channel", None)
        if channel is not None:
            channel.basic_ack = channel.basic_reject = _nowhere_to_send
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError:
            import structlog

            structlog.get_logger(__name__).warning(
                "worker.broker_lost_unacked", error=type(exc).__name__, detail="left to the sweeps"
            )
            self.connection = None


app = CeleryApp("nexus", task_cls=NexusTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every task's log context (task, organisation) and its closing line: after the app, so
# its signal handlers run after tenant-schemas-celery's switch into the task's schema.
import nexus.observability  # noqa: E402, F401

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
    task_name: str,
    *args,
    countdown: float = 0,
    log_event: str = "task.enqueue_failed",
    on_sent: Callable[[], None] | None = None,
) -> None:
    """Send the task named `task_name` once the current transaction commits, in the schema
    that is current now. (tenant-schemas-celery reads the schema when the message is sent;
    by commit time the caller may have left the organisation's context, as the Stripe
    webhook does.) By name, so a service never imports its app's tasks module, which imports
    the service: no import circle; the task is looked up when it is sent. A broker outage
    is logged and counted; the periodic sweeps send what was missed.
    `on_sent` runs in that same schema once the broker has accepted the message (to stamp
    the row as queued), never when the send failed."""
    import structlog
    from django.db import connection, transaction
    from django_tenants.utils import schema_context

    schema = connection.schema_name

    def send() -> None:
        try:
            task_named(task_name).apply_async(
                args=list(args), countdown=countdown, headers={"_schema_name": schema}
            )
        except Exception:
            ENQUEUE_FAILURES.labels(task=task_name).inc()
            structlog.get_logger(__name__).warning(log_event, task=task_name, args=args, exc_info=True)
            return
        if on_sent is not None:
            with schema_context(schema):
                on_sent()

    transaction.on_commit(send)


def task_named(name: str):
    """The registered task called `name`. Tasks are sent by name, and a process (web, say)
    may not have imported the module that defines it yet: Celery's autodiscovery imports
    every app's tasks module then. An unknown name raises NotRegistered."""
    try:
        return app.tasks[name]
    except NotRegistered:
        app.loader.import_default_modules()
        return app.tasks[name]


def fan_out(task_name: str, *, expires: float | None = None) -> int:
    """Send the task named `task_name` once per active organisation, each in that
    organisation's schema: how every periodic task does per-organisation work (the beat
    schedule lives in the public schema). `expires` drops a copy not started in time, for
    tasks whose next run does the same work. Returns the number sent."""
    from django_tenants.utils import tenant_context

    from tenants.selectors import organisations_active

    task = task_named(task_name)
    sent = 0
    for org in organisations_active():
        with tenant_context(org):
            task.apply_async(expires=expires)
        sent += 1
    return sent


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
