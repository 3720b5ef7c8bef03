"""Periodic per-organisation work is sent by one helper: once per active organisation, in
that organisation's schema, never for an inactive one or the public schema."""

import pytest
from celery.exceptions import NotRegistered
from django.db import connection

from nexus.celery import app as celery_app
from nexus.celery import fan_out, task_named
from tenants.models import Organisation

pytestmark = pytest.mark.django_db

FAN_OUT_TASKS = {
    "jobs.sweep": "jobs.sweep_organisation",
    "etl.dispatch_due": "etl.dispatch_organisation",
    "etl.sweep": "etl.sweep_organisation",
    "webhooks.sweep": "webhooks.sweep_organisation",
    "nexus.purge_idempotency_keys": "nexus.purge_organisation_idempotency_keys",
}


@pytest.fixture
def sent(monkeypatch):
    """(task name, schema header, expires) of each message Celery would publish."""
    messages = []

    def publish(producer, name, message, **options):
        headers = options.get("headers") or {}
        messages.append((name, headers.get("_schema_name"), options.get("expiration")))

    monkeypatch.setattr(celery_app.amqp, "send_task_message", publish)
    return messages


@pytest.fixture
def org_b_inactive(world):
    Organisation.objects.filter(pk=world.org_b.pk).update(is_active=False)
    return world


def test_fan_out_sends_once_per_active_organisation_in_its_schema(org_b_inactive, sent):
    world = org_b_inactive
    assert fan_out("jobs.sweep_organisation") == 1
    assert [(name, schema) for name, schema, _ in sent] == [
        ("jobs.sweep_organisation", world.org_a.schema_name)
    ]
    assert connection.schema_name == "public"  # the sender's schema is left as it was


def test_fan_out_passes_the_expiry_on(world, sent):
    fan_out("jobs.sweep_organisation", expires=5)
    assert len(sent) == 2
    assert all(expires is not None and 0 < expires <= 5 for _, _, expires in sent)


@pytest.mark.parametrize("periodic", sorted(FAN_OUT_TASKS))
def test_every_periodic_fan_out_skips_inactive_organisations(periodic, org_b_inactive, sent):
    world = org_b_inactive
    task_named(periodic).apply(throw=True)
    assert [(name, schema) for name, schema, _ in sent] == [
        (FAN_OUT_TASKS[periodic], world.org_a.schema_name)
    ]


def test_an_unknown_task_name_is_refused_before_anything_is_sent(world, sent):
    with pytest.raises(NotRegistered):
        fan_out("jobs.no_such_task")
    assert sent == []


def test_a_task_is_found_by_name_in_a_process_that_never_imported_its_module():
    """A web process sends webhooks.deliver by name without importing webhooks.tasks."""
    import subprocess
    import sys

    from nexus.tests.live import ROOT, live_env

    code = (
        "import django; django.setup()\n"
        "import sys\n"
        "from nexus.celery import task_named\n"
        "assert 'webhooks.tasks' not in sys.modules\n"
        "print(task_named('webhooks.deliver').name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=live_env({}), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "webhooks.deliver"
