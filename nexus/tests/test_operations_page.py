"""The admin's operations page (docs/specs/observability.md, "Operations page"): staff only;
queues and workers, failures of the last hour, ETL health and disabled endpoints across
every organisation, each read in one statement; a dependency that does not answer leaves a
notice, not an error; and nothing on it but what an operator needs (no input, no payload,
no address, no endpoint URL)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from etl.services import etl_run_source
from etl.tests.factories import api_source_create
from jobs import services as job_services
from jobs.models import Job
from jobs.tests.factories import job_create
from nexus.redis import get_redis
from nexus.tests.query_counts import assert_queries_do_not_grow, html_count
from nexus.tests.stub_server import StubServer
from tenants.models import User
from tenants.services import organisation_create
from webhooks import services as webhook_services
from webhooks.tests.factories import endpoint_create
from webhooks.tests.receiver import Receiver

pytestmark = pytest.mark.django_db

PAGE = "/admin/operations/"
HOOK_SECRET = "hook-token-7d41c9e2"
JOB_TEXT = "Summarise the quarterly note of OPS-PRIVATE-INPUT for the board."
PENDING_FOR = timedelta(hours=2, minutes=5)


@pytest.fixture(autouse=True)
def _live_figures_read_afresh(settings):
    # /metrics reuses its readings for a few seconds within a process; every request of
    # these tests must see the rows the test has just written.
    settings.METRICS_LIVE_CACHE_SECONDS = 0


@pytest.fixture
def operator_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator@ops.test", "operator-password-123"))
    return client


@pytest.fixture
def receiver():
    with Receiver() as server:
        server.answer(410)  # Gone: the attempt fails and the product disables the endpoint
        yield server


@pytest.fixture
def moved_source_server():
    """A data source whose every answer is a redirect: its runs fail."""
    with StubServer() as server:
        server.route_prefix("GET", "/", lambda request: (302, {"Location": "https://elsewhere.test/"}, ""))
        yield server


# --- Making each kind of trouble through the product's own services --------------------------


def _fail_a_job(user, *, failed_ago: timedelta = timedelta(0)) -> Job:
    job = job_create(user=user, text=JOB_TEXT)
    job_services.job_claim(job_id=job.pk, worker="ops-test-worker")
    job_services.job_fail(job_id=job.pk, attempt=1, error="provider said no", retryable=False)
    if failed_ago:
        Job.objects.filter(pk=job.pk).update(failed_at=timezone.now() - failed_ago)
    return job


def _leave_a_job_waiting(user, *, waited: timedelta) -> Job:
    job = job_create(user=user, text=JOB_TEXT)
    # Created (and due) `waited` ago: the worker never took it.
    due = timezone.now() - waited
    Job.objects.filter(pk=job.pk).update(created_at=due, next_attempt_at=due)
    return job


def _disable_an_endpoint_by_a_failed_attempt(receiver) -> None:
    """One delivery to a receiver answering 410 Gone: one failed attempt, and the endpoint
    (whose URL carries a secret in its query string) disabled by the product."""
    endpoint_create(url=f"{receiver.hook_url}?token={HOOK_SECRET}", events=["job.completed"])
    (delivery,) = webhook_services.webhook_publish(
        event_type="job.completed", data={"id": str(uuid.uuid4()), "note": "OPS-PRIVATE-PAYLOAD"}
    )
    attempt = webhook_services.webhook_attempt(delivery_id=delivery.pk)
    assert not attempt.succeeded


def _source_with_a_failed_run(server, name: str) -> None:
    source = api_source_create(url=f"{server.url}/items", name=name, requests_per_second=50)
    assert etl_run_source(source=source).status == "failed"


@dataclass
class Incidents:
    org_a_slug: str
    org_b_slug: str


@pytest.fixture
def incidents(funded, broker, receiver, moved_source_server) -> Incidents:
    """In both organisations: a failed job (A's 25 minutes ago), a failed webhook attempt
    that disabled its endpoint, failed ETL runs (B: two failing sources; A: one failing and
    one that never ran), and in A a job waiting for 2 h 05 min."""
    world = funded
    with tenant_context(world.org_a):
        _disable_an_endpoint_by_a_failed_attempt(receiver)
        _fail_a_job(world.member_a, failed_ago=timedelta(minutes=25))
        _source_with_a_failed_run(moved_source_server, "A failing")
        api_source_create(url=f"{moved_source_server.url}/never", name="A never ran")
        _leave_a_job_waiting(world.member_a, waited=PENDING_FOR)
    with tenant_context(world.org_b):
        _disable_an_endpoint_by_a_failed_attempt(receiver)
        _fail_a_job(world.member_b)
        _source_with_a_failed_run(moved_source_server, "B failing 1")
        _source_with_a_failed_run(moved_source_server, "B failing 2")
    connection.set_schema_to_public()
    return Incidents(org_a_slug=world.org_a.slug, org_b_slug=world.org_b.slug)


# --- Reading the page -----------------------------------------------------------------------


def _attr(html: str, element_marker: str, name: str) -> str:
    """The value of attribute `name` on the first element carrying `element_marker`."""
    match = re.search(rf"<[^>]*{re.escape(element_marker)}[^>]*>", html)
    assert match, f"no element with {element_marker}"
    value = re.search(rf'\s{re.escape(name)}="([^"]*)"', match.group(0))
    assert value, f"no {name} on {match.group(0)}"
    return value.group(1)


def _figure(html: str, name: str) -> str:
    match = re.search(rf'data-figure="{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no figure {name}"
    return match.group(1).strip()


def _page(client) -> str:
    response = client.get(PAGE)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


# --- Who may see it -------------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_the_admin_sign_in():
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/admin/operations/")


def test_organisation_admin_who_is_not_staff_is_refused(world):
    client = Client()
    client.force_login(world.admin_a)
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_admin_index_links_to_the_operations_page(operator_client):
    html = operator_client.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in html
    # The stock index is still there under the link: the apps and the recent actions.
    assert 'id="recent-actions-module"' in html
    assert "/admin/tenants/organisation/" in html


def test_the_page_is_read_only(operator_client):
    assert operator_client.post(PAGE).status_code == 405


# --- What it shows --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jobs", "webhook_attempts", "etl_runs"])
def test_failures_of_the_last_hour_are_counted_across_organisations(operator_client, incidents, kind):
    html = _page(operator_client)
    # One of each in both organisations (two failing ETL sources in B).
    expected = {"jobs": "2", "webhook_attempts": "2", "etl_runs": "3"}[kind]
    assert _attr(html, f'data-failures="{kind}"', "data-total") == expected


def test_tasks_that_raised_on_any_worker_are_counted(operator_client, world):
    from celery.signals import task_failure

    from nexus.celery import task_named
    from nexus.operations import task_failures_last_hour
    from nexus.tests.metric_values import Moved

    before = task_failures_last_hour().total
    with Moved() as moved:
        for _ in range(2):
            task_failure.send(
                sender=task_named("jobs.sweep"), task_id=str(uuid.uuid4()), exception=RuntimeError()
            )
    html = _page(operator_client)
    assert _attr(html, 'data-failures="tasks"', "data-total") == str(before + 2)
    assert moved("nexus_task_failures_total", task="jobs.sweep") == 2


def test_failures_are_drawn_per_ten_minutes(operator_client, incidents):
    html = _page(operator_client)
    jobs_chart = html[html.index('data-failures="jobs"') : html.index('data-failures="webhook_attempts"')]
    columns = re.findall(r'data-bucket="(\d)" data-value="(\d+)"', jobs_chart)
    # Oldest ten minutes first: A's job failed 25 minutes ago (the 30-20 column), B's now.
    assert columns == [("0", "0"), ("1", "0"), ("2", "0"), ("3", "1"), ("4", "0"), ("5", "1")]


def test_failures_are_listed_per_organisation(operator_client, incidents):
    html = _page(operator_client)
    row_b = re.search(rf'data-failures-org="{incidents.org_b_slug}".*?</tr>', html, re.S).group(0)
    assert re.findall(r"<td>(\d+)</td>", row_b) == ["1", "1", "2"]


def test_the_oldest_pending_job_and_the_pending_count_are_shown(operator_client, incidents):
    html = _page(operator_client)
    assert _figure(html, "oldest-pending-age") == "2 h 05 min"
    assert _figure(html, "jobs-pending") == "1"


def test_no_job_waiting_is_said_so(operator_client, world):
    assert _figure(_page(operator_client), "oldest-pending-age") == "none waiting"


def test_workers_and_jobs_on_dead_workers_are_shown(operator_client, incidents):
    html = _page(operator_client)
    assert _figure(html, "jobs-on-dead-workers") == "0"
    assert _figure(html, "workers-alive").isdigit()


def test_etl_health_puts_the_unhealthiest_organisation_first(operator_client, incidents):
    html = _page(operator_client)
    order = re.findall(r'data-etl-org="([^"]+)"', html)
    assert order[:2] == [incidents.org_b_slug, incidents.org_a_slug]


@pytest.mark.parametrize(
    ("org", "attribute", "expected"),
    [
        ("a", "data-enabled", "2"),
        ("a", "data-failing", "1"),
        ("b", "data-enabled", "2"),
        ("b", "data-failing", "2"),
    ],
)
def test_etl_health_counts_enabled_and_failing_sources(operator_client, incidents, org, attribute, expected):
    slug = {"a": incidents.org_a_slug, "b": incidents.org_b_slug}[org]
    assert _attr(_page(operator_client), f'data-etl-org="{slug}"', attribute) == expected


def test_disabled_endpoints_are_listed_per_organisation(operator_client, incidents):
    html = _page(operator_client)
    assert sorted(re.findall(r'data-disabled-endpoint="([^"]+)"', html)) == sorted(
        [incidents.org_a_slug, incidents.org_b_slug]
    )
    assert _figure(html, "endpoints-disabled") == "2"


def test_a_disabled_endpoint_shows_its_host_and_reason(operator_client, incidents):
    html = _page(operator_client)
    row = re.search(rf'data-disabled-endpoint="{incidents.org_a_slug}".*?</tr>', html, re.S).group(0)
    assert "<td>127.0.0.1</td>" in row
    assert "410 Gone" in row


def test_a_disabled_endpoints_url_and_its_secret_never_appear(operator_client, incidents, receiver):
    html = _page(operator_client)
    assert HOOK_SECRET not in html
    assert receiver.hook_url not in html


def test_the_page_shows_no_job_input_payload_or_address(operator_client, incidents, world):
    html = _page(operator_client)
    assert "OPS-PRIVATE-INPUT" not in html
    assert "OPS-PRIVATE-PAYLOAD" not in html
    for user in (world.admin_a, world.member_a, world.admin_b, world.member_b):
        assert user.email not in html


def test_queue_depths_come_from_the_broker(operator_client):
    queue = django_settings.CELERY_QUEUES_BY_KIND["jobs"]
    broker = get_redis(django_settings.CELERY_BROKER_URL)
    # This test run's own queue (see settings_test): nothing else reads or writes it here.
    broker.rpush(queue, "m1", "m2", "m3")
    try:
        html = _page(operator_client)
    finally:
        broker.delete(queue)
    assert _attr(html, 'data-queue="jobs"', "data-depth") == "3"


# --- When a dependency does not answer ------------------------------------------------------


def test_a_broker_that_does_not_answer_leaves_a_notice(operator_client, incidents, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    html = _page(operator_client)
    assert 'data-notice="queues"' in html
    assert 'data-queue="' not in html
    # The rest of the page is still there.
    assert _attr(html, 'data-failures="jobs"', "data-total") == "2"


@pytest.mark.parametrize(
    ("table", "cut_off", "still_read"),
    [
        # The snapshot's backlog (shared with /metrics) and the failures read need the jobs.
        ("jobs_job", ["backlog", "failures"], "etl"),
        ("etl_etlrun", ["failures", "etl"], "endpoints"),
    ],
)
def test_a_cross_schema_read_that_times_out_leaves_a_notice(
    operator_client, world, table, cut_off, still_read, monkeypatch
):
    """Another session holds one of org A's tables locked: every read that needs it is
    cancelled by its statement timeout, and its section says so; the others are read."""
    from nexus import crossschema

    monkeypatch.setattr(crossschema, "STATEMENT_TIMEOUT_MS", 300)  # the test waits less than 2 s
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None, host=db["HOST"], port=db["PORT"]
    ) as holder:
        holder.execute("SET lock_timeout = '5s'")
        holder.execute(f'LOCK TABLE "{world.org_a.schema_name}".{table} IN ACCESS EXCLUSIVE MODE')
        html = _page(operator_client)
        holder.rollback()
    for section in cut_off:
        assert f'data-notice="{section}"' in html
    assert f'data-notice="{still_read}"' not in html


# --- Cost ------------------------------------------------------------------------------------


def test_the_page_queries_do_not_grow_with_organisations(
    operator_client, world, moved_source_server, django_assert_max_num_queries
):
    def add_organisations_with_a_source() -> None:
        for _ in range(2):
            suffix = uuid.uuid4().hex[:8]
            org = organisation_create(name=f"Ops {suffix}", email_domain=f"ops-{suffix}.test")
            with tenant_context(org):
                api_source_create(url=f"{moved_source_server.url}/items", name="Feed")
        connection.set_schema_to_public()

    add_organisations_with_a_source()
    assert_queries_do_not_grow(
        lambda: operator_client.get(PAGE),
        add_organisations_with_a_source,
        html_count("data-etl-org="),
        django_assert_max_num_queries,
    )
