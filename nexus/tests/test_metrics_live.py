"""The series /metrics reads when it is scraped: queue depths from the broker, and the job
backlog, workers and disabled endpoints across every organisation's schema in one statement.
Also: no label names an organisation, a dependency that is down is reported as such, and the
whole output passes `promtool check metrics`."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tenants.utils import tenant_context
from prometheus_client.parser import text_string_to_metric_families

from jobs.models import Job, JobStatus
from jobs.tests.factories import job_create
from nexus import metrics
from tenants.models import WorkerHeartbeat
from webhooks.models import WebhookEndpoint
from webhooks.tests.factories import endpoint_create

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token"


@pytest.fixture(autouse=True)
def fresh_readings(settings, monkeypatch):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_LIVE_CACHE_SECONDS = 0
    monkeypatch.setattr(metrics, "_snapshot", None)


def _scrape(client) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return response.content.decode()


def _values(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def backlog(funded, broker):
    """In organisation A: a job due two minutes ago, a job running on a worker that stopped
    heartbeating, a disabled endpoint; one live worker and one dead one."""
    now = timezone.now()
    WorkerHeartbeat.objects.all().delete()
    WorkerHeartbeat.objects.create(name="alive@host", beat_at=now)
    WorkerHeartbeat.objects.create(name="ghost@host", beat_at=now - timedelta(minutes=5))
    with tenant_context(funded.org_a):
        waiting = job_create(user=funded.admin_a)
        Job.objects.filter(pk=waiting.pk).update(
            created_at=now - timedelta(minutes=2), next_attempt_at=now - timedelta(minutes=2)
        )
        orphan = job_create(user=funded.admin_a)
        Job.objects.filter(pk=orphan.pk).update(
            status=JobStatus.RUNNING,
            worker="ghost@host",
            attempt_count=1,
            started_at=now - timedelta(minutes=1),
        )
        healthy = job_create(user=funded.admin_a)
        Job.objects.filter(pk=healthy.pk).update(
            status=JobStatus.RUNNING,
            worker="alive@host",
            attempt_count=1,
            started_at=now - timedelta(minutes=1),
        )
        endpoint, _ = endpoint_create(url="http://127.0.0.1:9/in")
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False, disabled_at=now)
    return funded


def test_backlog_is_read_across_organisations_at_scrape_time(backlog, client):
    values = _values(_scrape(client))
    assert values[("nexus_jobs_pending", ())] == 1
    assert values[("nexus_jobs_oldest_pending_age_seconds", ())] >= 120
    assert values[("nexus_jobs_running_on_dead_workers", ())] == 1
    assert values[("nexus_workers_alive", ())] == 1
    assert values[("nexus_webhook_endpoints_disabled", ())] == 1
    assert values[("nexus_dependency_up", (("dependency", "database"),))] == 1


def test_the_backlog_is_per_organisation_underneath(backlog):
    snapshot = metrics.live_snapshot()
    by_org = {org.org_slug: org for org in snapshot.backlog}
    assert by_org[backlog.org_a.slug].jobs_pending == 1
    assert by_org[backlog.org_b.slug].jobs_pending == 0


def test_queue_depth_counts_waiting_messages_per_queue(funded, client, settings):
    from nexus.redis import get_redis

    queue = settings.CELERY_QUEUES_BY_KIND["webhooks"]
    redis = get_redis(settings.CELERY_BROKER_URL)
    redis.rpush(queue, "m1", "m2")
    try:
        values = _values(_scrape(client))
    finally:
        redis.delete(queue)
    assert values[("nexus_queue_depth", (("queue", "webhooks"),))] == 2
    assert values[("nexus_dependency_up", (("dependency", "redis"),))] == 1


def test_the_database_read_does_not_grow_with_the_number_of_organisations(funded):
    from tenants.services import organisation_create

    metrics._take_snapshot()  # warm-up: one-off lookups of a first read do not count
    with CaptureQueriesContext(connection) as few:
        metrics._take_snapshot()
    for n in range(3):
        organisation_create(name=f"Extra {n}", email_domain=f"extra-{n}.test")
    with CaptureQueriesContext(connection) as more:
        snapshot = metrics._take_snapshot()
    assert len(snapshot.backlog) >= 5  # the new organisations were read
    assert len(more.captured_queries) <= len(few.captured_queries)


def test_database_down_is_reported_and_its_series_left_out(funded, client, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(metrics, "across_organisations", unreachable)
    values = _values(_scrape(client))
    assert values[("nexus_dependency_up", (("dependency", "database"),))] == 0
    assert ("nexus_jobs_pending", ()) not in values


def test_a_backlog_read_cut_off_by_its_timeout_is_not_reported_as_an_outage(funded, client, monkeypatch):
    from django.db.utils import OperationalError as CutOff
    from psycopg.errors import QueryCanceled

    def too_slow(*args, **kwargs):
        raise CutOff("canceling statement due to statement timeout") from QueryCanceled()

    monkeypatch.setattr(metrics, "across_organisations", too_slow)
    values = _values(_scrape(client))
    assert values[("nexus_dependency_up", (("dependency", "database"),))] == 1
    assert values[("nexus_metrics_read_ok", (("part", "backlog"),))] == 0
    assert ("nexus_jobs_pending", ()) not in values


def test_redis_down_is_reported_and_queue_depths_left_out(funded, client, monkeypatch, settings):
    from redis import Redis

    monkeypatch.setattr(metrics, "get_redis", lambda url=None: Redis(port=1, socket_connect_timeout=0.2))
    values = _values(_scrape(client))
    assert values[("nexus_dependency_up", (("dependency", "redis"),))] == 0
    assert not any(name == "nexus_queue_depth" for name, _ in values)


def test_no_label_names_an_organisation(backlog, client):
    text = _scrape(client)
    label_values = {value for _, labels in _values(text) for _, value in labels}
    for org in (backlog.org_a, backlog.org_b):
        assert str(org.id) not in label_values
        assert org.slug not in label_values
    label_names = {name for _, labels in _values(text) for name, _ in labels}
    assert not {"org", "org_id", "organisation", "organization", "tenant", "schema"} & label_names


def test_the_output_passes_promtool(backlog, client):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed: run `make prometheus-deps`")
        pytest.skip("promtool is not installed (make prometheus-deps)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=_scrape(client), capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_schema_name_that_could_leave_its_quotes_fails_the_read(funded):
    from nexus.crossschema import UnsafeSchemaName, across_organisations
    from tenants.models import Organisation

    Organisation.objects.filter(pk=funded.org_b.pk).update(schema_name='org_b"; DROP TABLE x; --')
    with pytest.raises(UnsafeSchemaName):
        across_organisations("SELECT 1 FROM {schema}.jobs_job")


def test_an_unsafe_schema_name_leaves_the_backlog_unread_not_a_500(funded, client):
    from tenants.models import Organisation

    Organisation.objects.filter(pk=funded.org_b.pk).update(schema_name="org_b%s{x}")
    values = _values(_scrape(client))
    assert values[("nexus_metrics_read_ok", (("part", "backlog"),))] == 0
    assert values[("nexus_dependency_up", (("dependency", "database"),))] == 1


def test_many_organisations_are_read_a_hundred_schemas_to_a_statement(funded, monkeypatch):
    from nexus import crossschema
    from tenants.services import organisation_create

    monkeypatch.setattr(crossschema, "SCHEMAS_PER_STATEMENT", 2)
    for n in range(3):
        organisation_create(name=f"Chunked {n}", email_domain=f"chunked-{n}.test")
    rows = crossschema.across_organisations("SELECT count(*) FROM {schema}.jobs_job")
    assert len(rows) >= 5  # three statements of at most two schemas
    assert {slug for _, slug, _ in rows} >= {funded.org_a.slug, funded.org_b.slug}
    assert len(rows) == len({org_id for org_id, _, _ in rows})  # each organisation once


def test_a_scrape_does_not_queue_behind_a_stuck_read(funded, monkeypatch, settings):
    settings.METRICS_LIVE_CACHE_SECONDS = 0
    previous = metrics.live_snapshot()
    monkeypatch.setattr(metrics, "SNAPSHOT_WAIT_SECONDS", 0.1)
    metrics._snapshot_lock.acquire()  # another thread's read that never finishes
    try:
        served = metrics.live_snapshot()
    finally:
        metrics._snapshot_lock.release()
    assert served is previous
