"""Browser tests: Debian's Chromium driven by Playwright, against a real gunicorn server
and a real Celery worker on the test database. A failing test leaves a screenshot in
test-artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nexus.tests.browser.helpers import PASSWORD
from nexus.tests.live import ARTIFACTS, ROOT, WorkerProcess, free_port, live_env

CHROMIUM = "/usr/bin/chromium"
# Playwright's sync API keeps an event loop running in this thread; the ORM calls the
# tests make between browser steps are ordinary synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


class LiveServer:
    def __init__(self, extra_env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env
        self.process: subprocess.Popen | None = None
        self.log_path = ARTIFACTS / f"web-{os.getpid()}.log"

    def start(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        env = live_env(self.extra_env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "nexus.wsgi:application", "-c", "nexus/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "8"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"web server exited; see {self.log_path}")
            time.sleep(0.2)
        raise RuntimeError(f"web server not ready; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="module")
def _live_stack(django_db_setup, gemini_stub):
    """A web server and a Celery worker for the browser tests of one module: started once per
    module instead of once per test (each start costs seconds). Module scope is what keeps
    this safe beside the other tests: pytest stops it before running a test of another
    module in this process, so its worker never takes the tasks of a test that started a
    worker of its own."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    env = {
        "GEMINI_API_KEY": "test-key",
        "GEMINI_BASE_URL": gemini_stub.url,
        "JOB_PROVIDER_TIMEOUT_SECONDS": "5",
    }
    worker = WorkerProcess(env, name="browser")
    server = LiveServer({**env, "DASHBOARD_REFRESH_SECONDS": "1"})
    worker.start()
    server.start()
    yield server, worker
    server.stop()
    worker.stop()


@pytest.fixture
def live_web(live_db, _live_stack):
    """The module's web server (and its worker), running: started again if a test stopped it."""
    server, worker = _live_stack
    if worker.process is None or worker.process.poll() is not None:
        worker.start()
    if server.process is None or server.process.poll() is not None:
        server.start()
    return server


@pytest.fixture
def person(live_org):
    """The live organisation, whose admin signs in with PASSWORD."""
    live_org.admin.set_password(PASSWORD)
    live_org.admin.save()
    return live_org


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    yield browser
    browser.close()
    playwright.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _open_page(chromium, request, tmp_path, **context_options):
    context = chromium.new_context(**context_options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        target = ARTIFACTS / f"{request.node.name}.png"
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        shutil.copy(tmp_path / "failure.png", target)
    context.close()


@pytest.fixture
def page(chromium, request, tmp_path):
    yield from _open_page(chromium, request, tmp_path, viewport={"width": 1200, "height": 900})


@pytest.fixture
def phone(chromium, request, tmp_path):
    """A phone-sized window, 390 x 844 CSS pixels. Not emulated as a mobile device: mobile
    emulation widens the layout viewport to fit overflowing content, which would hide it."""
    yield from _open_page(chromium, request, tmp_path, viewport={"width": 390, "height": 844})


@pytest.fixture
def page_without_javascript(chromium, request, tmp_path):
    yield from _open_page(
        chromium, request, tmp_path, viewport={"width": 1200, "height": 900}, java_script_enabled=False
    )
