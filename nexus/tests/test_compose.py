"""docker-compose.yml runs a working system by itself. No Docker engine runs where the suite
runs, so these read the file: the order of the one-off jobs (migrate, then seed), a worker
for every queue and one beat (which dispatches the ETL), and that every app container
starts with nothing but the file, checked by importing the settings in a process given
exactly the environment compose would give it with no .env."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("worker-jobs", "worker-webhooks", "worker-etl", "worker-audits", "worker-periodic")
APP_SERVICES = ("migrate", "seed", "web", *WORKERS, "beat")
# ${NAME}, ${NAME:-default}, ${NAME-default}; $$ is a literal dollar.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _services() -> dict:
    return _compose()["services"]


def _interpolate(value: str, environment: dict[str, str]) -> str:
    """What compose makes of a value given `environment` (the shell plus .env)."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        current = environment.get(name)
        if operator == ":-" and not current:
            return default
        if operator == "-" and current is None:
            return default
        if current is None:
            raise AssertionError(f"${{{name}}} has no default: compose would need a .env for it")
        return current

    return _VARIABLE.sub(replace, value)


def _environment_without_dotenv(service: str) -> dict[str, str]:
    raw = _services()[service].get("environment", {})
    return {name: _interpolate(str(value), {}) for name, value in raw.items()}


def _command(service: str) -> str:
    command = _services()[service].get("command")
    return " ".join(command) if isinstance(command, list) else (command or "")


def _depends(service: str) -> dict:
    return _services()[service].get("depends_on", {})


def test_every_process_of_the_system_is_a_service():
    assert set(APP_SERVICES) | {"postgres", "redis"} == set(_services())


def test_the_migrations_run_once_before_anything_else():
    assert "migrate_schemas" in _command("migrate")
    assert "sync_template_schema" in _command("migrate")
    assert _services()["migrate"]["restart"] == "no"
    for dependency in ("postgres", "redis"):
        assert _depends("migrate")[dependency] == {"condition": "service_healthy"}
    for service in APP_SERVICES:
        if service != "migrate":
            assert _depends(service)["migrate"] == {"condition": "service_completed_successfully"}, service


def test_the_seed_job_creates_the_demo_organisations_and_their_sources_without_printing_tokens():
    command = _command("seed")
    assert command.index("seed_demo --no-tokens --skip-unless-debug") < command.index(
        "seed_demo_content --skip-unless-debug"
    )  # with DEBUG off (a real deployment) it creates nothing: see tenants/tests/test_commands.py
    assert _services()["seed"]["restart"] == "no"


def test_a_worker_consumes_every_queue_and_exactly_one_beat_dispatches_the_etl():
    consumed = []
    for name in _services():
        command = _command(name)
        if " worker " in f" {command} ":
            consumed += re.search(r"--queues (\S+)", command).group(1).split(",")
    assert sorted(consumed) == sorted(settings.CELERY_QUEUES_BY_KIND)  # compose sets no queue prefix
    beats = [name for name in _services() if " beat" in _command(name)]
    assert beats == ["beat"]
    assert "deploy" not in _services()["beat"]  # never scaled: a second beat sends every task twice
    dispatch = settings.CELERY_BEAT_SCHEDULE["etl-dispatch-due"]
    assert dispatch["task"] == "etl.dispatch_due"
    assert dispatch["schedule"] <= 60  # the seeded sources are due at once: ingested within a minute


def test_web_answers_on_port_8000_of_this_machine_only_unless_told_and_is_health_checked():
    web = _services()["web"]
    (port,) = web["ports"]
    assert _interpolate(port, {}) == "127.0.0.1:8000:8000"  # a DEBUG trial is not on the network
    assert _interpolate(port, {"WEB_BIND": "192.0.2.10"}) == "192.0.2.10:8000:8000"
    assert "/health" in " ".join(web["healthcheck"]["test"])


def test_uploads_are_on_a_volume_web_workers_and_seed_share():
    for service in APP_SERVICES:
        assert "media:/var/lib/nexus/media" in _services()[service]["volumes"], service


def test_no_secret_has_a_value_in_the_file():
    for service in APP_SERVICES:
        for name, value in _environment_without_dotenv(service).items():
            # DEMO_PASSWORD is published on purpose: it only ever exists with DEBUG on.
            if re.search(r"SECRET|TOKEN|_KEY$|_KEYS$|DSN|PASSWORD", name) and name != "DEMO_PASSWORD":
                assert value == "", f"{service}: {name} has a value in docker-compose.yml"


def _start_settings(environment: dict[str, str], code: str = "") -> subprocess.CompletedProcess:
    """A process importing the settings, as a container does, with only `environment`."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(  # nosec B603
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**base, **environment, "DJANGO_SETTINGS_MODULE": "nexus.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", ["web", "seed", "worker-etl", "beat"])
def test_each_app_container_starts_with_no_dotenv(service):
    result = _start_settings(
        _environment_without_dotenv(service),
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SECRET_KEY_IS_DEVELOPMENT, s.DATABASES['default']['HOST'], s.REDIS_URL)",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True", "postgres", "redis://redis:6379/0"]


def test_with_debug_off_the_containers_refuse_to_start_without_a_secret_key():
    environment = {
        name: _interpolate(str(value), {"DEBUG": "false"})
        for name, value in _services()["web"]["environment"].items()
    }
    result = _start_settings(environment)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
