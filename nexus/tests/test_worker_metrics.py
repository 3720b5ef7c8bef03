"""A worker in its own container serves its own counts (WORKER_METRICS_PORT), from its pool's
children through its multiprocess directory, behind the same token as web's /metrics."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from django_tenants.utils import tenant_context
from prometheus_client.parser import text_string_to_metric_families

from jobs import services as job_services
from jobs.models import Job, JobStatus
from nexus.tests.live import WorkerProcess, free_port

TOKEN = "worker-scrape-token"


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # nosec B310 - the test's own worker
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_a_worker_serves_its_own_counts_behind_the_token(live_org, tmp_path):
    port = free_port()
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    worker = WorkerProcess(
        {
            "WORKER_METRICS_PORT": str(port),
            "METRICS_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        },
        queues=("jobs",),
        name="metrics",
        pool="prefork",
    )
    worker.start()
    try:
        live_org.grant(100)
        with tenant_context(live_org):
            job = job_services.job_create(
                user=live_org.admin, job_type="summarize", text="Counted by the worker."
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with tenant_context(live_org):
                if Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED:
                    break
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/metrics"
        refused, _ = _get(url)
        wrong, _ = _get(url, "not-the-token")
        status, text = _get(url, TOKEN)
    finally:
        worker.stop()
    assert refused == 404
    assert wrong == 404
    assert status == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("nexus_jobs_finished_total", (("job_type", "summarize"), ("outcome", "completed")))] == 1
    assert not any(name == "nexus_jobs_pending" for name, _ in samples)  # web's alone


@pytest.mark.parametrize("path", ["/", "/metrics/../admin", "/other"])
def test_the_worker_endpoint_answers_only_metrics(path, settings):
    from nexus.worker_metrics import worker_metrics_app

    settings.METRICS_TOKEN = TOKEN
    answered = []
    body = worker_metrics_app(
        {"PATH_INFO": path, "HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "REMOTE_ADDR": "127.0.0.1"},
        lambda status, headers: answered.append(status),
    )
    assert answered == ["404 Not Found"]
    assert body == [b"not found\n"]
