"""A real Prometheus server (Debian's package) scrapes the app under gunicorn with the
product's alert rules, and an alert fires when its condition is provoked: jobs queue up
while no worker is alive. Only the rules' `for:` durations are shortened, so the test
waits seconds instead of minutes; the expressions are the shipped ones."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from django_tenants.utils import tenant_context

from jobs import services as job_services
from nexus.tests.live import ROOT, free_port, gunicorn_server
from tenants.models import WorkerHeartbeat

RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
TOKEN = "prometheus-test-token"


def _prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed: run `make prometheus-deps`")
        pytest.skip("prometheus is not installed (make prometheus-deps)")
    return binary


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _firing(base: str) -> list[dict]:
    alerts = _get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
    return [alert for alert in alerts if alert["state"] == "firing"]


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="nexus-prometheus-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_no_live_workers_alert_fires_against_the_running_app(live_org, workdir, broker):
    binary = _prometheus()
    # Rules as shipped, `for:` durations cut to zero.
    (workdir / "alerts.yml").write_text(re.sub(r"(?m)^(\s+)for: .*$", r"\1for: 0s", RULES.read_text()))
    (workdir / "token").write_text(TOKEN)
    multiproc = workdir / "multiproc"
    multiproc.mkdir()

    # No worker runs in this test; heartbeats of earlier tests' workers must not count. The
    # jobs are committed but their messages recorded, not queued: no later worker runs them.
    WorkerHeartbeat.objects.all().delete()
    live_org.grant(100)
    with tenant_context(live_org):
        for _ in range(3):
            job_services.job_create(user=live_org.admin, job_type="summarize", text="Notes for the quarter.")

    env = {
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "METRICS_LIVE_CACHE_SECONDS": "0",
    }
    with gunicorn_server(env, log_name="prometheus") as (host, port):
        prometheus_port = free_port()
        (workdir / "prometheus.yml").write_text(
            f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: nexus
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: token
    static_configs:
      - targets: ["{host}:{port}"]
"""
        )
        server = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=(workdir / "prometheus.log").open("wb"),
        )  # fmt: skip
        base = f"http://127.0.0.1:{prometheus_port}"
        try:
            deadline = time.monotonic() + 60
            firing: list[dict] = []
            while time.monotonic() < deadline and not firing:
                time.sleep(1)
                try:
                    firing = [a for a in _firing(base) if a["labels"]["alertname"] == "NexusNoLiveWorkers"]
                except OSError:
                    continue  # not listening yet
            targets = _get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
            pending = _get_json(f"{base}/api/v1/query?query=nexus_jobs_pending")["data"]["result"]
        finally:
            server.terminate()
            server.wait(10)

    assert targets[0]["health"] == "up", targets[0].get("lastError")
    assert float(pending[0]["value"][1]) >= 3
    assert firing, (workdir / "prometheus.log").read_text()[-2000:]
    assert firing[0]["labels"]["severity"] == "page"
    assert firing[0]["annotations"]["runbook_url"] == "docs/runbook.md#nexusnoliveworkers"
