"""The smoke test (scripts/smoke.py) and the account it runs as.

The script is run as a user would run it, against the production server (gunicorn) and a
real Celery worker on the test database: every check must pass, and a deployment that gets
one thing wrong (here, the metrics token) must fail it with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_tenants.utils import tenant_context

from billing.selectors import credits_balance
from billing.services import credits_adjust
from nexus.ratelimit import check, organisation_window_reset
from nexus.tests.live import ROOT, WorkerProcess, gunicorn_server
from tenants.models import Organisation, User
from tenants.services import token_pair_issue

CHECKS = ["health", "sign-in", "job", "cache", "api-key", "etl", "resume", "webhook", "metrics", "rate-limit"]
METRICS_TOKEN = "smoke-metrics-token-0123456789"  # nosec B105
SERVER_ENV = {"METRICS_TOKEN": METRICS_TOKEN, "ETL_REQUIRE_HTTPS": "false"}


@pytest.mark.django_db
def test_smoke_account_is_made_once_topped_up_and_its_window_emptied():
    out = StringIO()
    call_command("smoke_account", domain="smoke-check.test", stdout=out, stderr=StringIO())
    org = Organisation.objects.get(email_domain="smoke-check.test")
    admin = User.objects.get(email="smoke-admin@smoke-check.test")
    assert (admin.organisation_id, admin.role) == (org.pk, "admin")
    assert out.getvalue().strip().count(".") == 2  # a JWT, and nothing else on stdout

    with tenant_context(org):
        assert credits_balance() == 100
        credits_adjust(amount=-70, reason="spent", actor_label="operator:tests")
    for _ in range(3):
        check(bucket=str(org.id), limit=3, window_seconds=900)
    assert not check(bucket=str(org.id), limit=3, window_seconds=900).allowed

    call_command("smoke_account", domain="smoke-check.test", stdout=StringIO(), stderr=StringIO())
    assert Organisation.objects.filter(email_domain="smoke-check.test").count() == 1
    assert User.objects.filter(email="smoke-admin@smoke-check.test").count() == 1
    with tenant_context(org):
        assert credits_balance() == 100
    assert check(bucket=str(org.id), limit=3, window_seconds=900).allowed


@pytest.mark.django_db
def test_smoke_account_never_joins_a_customers_organisation(world):
    customer = world.org_a
    with pytest.raises(CommandError, match="not the smoke test's"):
        call_command("smoke_account", domain=customer.email_domain, stdout=StringIO(), stderr=StringIO())
    assert not User.objects.filter(email=f"smoke-admin@{customer.email_domain}").exists()
    with tenant_context(customer):
        assert credits_balance() == 0


def _smoke(base_url: str, token: str, metrics_token: str, *options: str) -> subprocess.CompletedProcess:
    environment = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "SMOKE_TOKEN": token,
        "SMOKE_METRICS_TOKEN": metrics_token,
    }
    return subprocess.run(  # nosec B603
        [sys.executable, "scripts/smoke.py", "--base-url", base_url, "--timeout", "60", *options],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_smoke_test_passes_against_a_running_system_and_fails_on_a_wrong_token(live_org):
    live_org.grant(100)
    # The burst to the 429 spends the organisation's whole limit: a small one.
    Organisation.objects.filter(pk=live_org.pk).update(api_rate_limit=60)
    worker = WorkerProcess(SERVER_ENV, name="smoke")
    worker.start()
    try:
        with gunicorn_server(SERVER_ENV, log_name="smoke", threads=8) as (host, port):
            token = token_pair_issue(user=live_org.admin).access
            passed = _smoke(f"http://{host}:{port}", token, METRICS_TOKEN)
            assert passed.returncode == 0, passed.stdout + passed.stderr[-3000:]
            rows = [line.split()[1] for line in passed.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
            assert rows == CHECKS
            assert "10/10 checks passed" in passed.stdout
            assert "12,000 records in all, none twice" in passed.stdout

            # What it created is gone again; what it charged is one job.
            with tenant_context(live_org):
                from etl.models import DataSource
                from webhooks.selectors import endpoint_list

                assert not DataSource.objects.exists()
                assert not endpoint_list().exists()
                assert credits_balance() == 90
            # Its API key was revoked, and the audit log says by whom.
            from auditlog.models import AuditEvent
            from tenants.models import ApiKey

            assert ApiKey.objects.filter(organisation=live_org).count() == 1
            assert ApiKey.objects.get(organisation=live_org).revoked
            assert (
                AuditEvent.objects.filter(organisation_id=live_org.pk, action="api_key.revoked").count() == 1
            )

            organisation_window_reset(live_org)
            failed = _smoke(f"http://{host}:{port}", token, "not-the-token", "--skip", "etl,resume,webhook")
            assert failed.returncode == 1
            assert "FAIL  metrics" in failed.stdout
            assert "6/7 checks passed; failed: metrics" in failed.stdout
    finally:
        worker.stop()
