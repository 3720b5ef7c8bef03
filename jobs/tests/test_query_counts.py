"""Job lists (jobs, a job's events, usage, the jobs page and the dashboard) answer in a
fixed number of queries, however many rows there are (docs/specs/foundation.md, "Query
counts")."""

import itertools

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billing.services import credits_grant
from jobs.models import EventKind, JobEvent
from jobs.services import job_create
from nexus.tests.query_counts import api_rows, assert_queries_do_not_grow, html_count
from webhooks.models import WebhookNotice
from webhooks.services import webhook_endpoint_create

pytestmark = pytest.mark.django_db

VERSIONS = ["v1", "v2"]
_numbers = itertools.count()


@pytest.fixture
def rich(world):
    """Organisation A with credits enough for every job these tests create."""
    with tenant_context(world.org_a):
        credits_grant(amount=5000, reason="query counts", actor_label="operator:tests")
    return world


def _add_jobs(world, how_many: int = 3) -> list:
    with tenant_context(world.org_a):
        # A distinct text per job: no answer comes from the result cache.
        return [
            job_create(user=world.member_a, job_type="summarize", text=f"qc-job {next(_numbers)}. Some text.")
            for _ in range(how_many)
        ]


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", ["jobs", "analytics/usage"])
def test_job_list_queries_do_not_grow(rich, api_as, django_assert_max_num_queries, version, path):
    client = api_as(rich.member_a)
    _add_jobs(rich)

    def shown(response):
        data = response.json()["data"]
        return len(data) if isinstance(data, list) else sum(data["jobs_by_type"].values())

    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/{path}"),
        lambda: _add_jobs(rich),
        shown,
        django_assert_max_num_queries,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_job_event_list_queries_do_not_grow(rich, api_as, django_assert_max_num_queries, version):
    client = api_as(rich.member_a)
    (job,) = _add_jobs(rich, how_many=1)

    def add_events():
        with tenant_context(rich.org_a):
            for _ in range(3):
                JobEvent.objects.create(job=job, kind=EventKind.STARTED, message=f"qc-event {next(_numbers)}")

    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/jobs/{job.pk}/events"),
        add_events,
        api_rows,
        django_assert_max_num_queries,
    )


def test_jobs_page_queries_do_not_grow(rich, django_assert_max_num_queries):
    client = _page_client(rich.member_a)
    _add_jobs(rich)
    assert_queries_do_not_grow(
        lambda: client.get("/jobs"),
        lambda: _add_jobs(rich),
        html_count('class="status-'),
        django_assert_max_num_queries,
    )


def test_dashboard_queries_do_not_grow(rich, django_assert_max_num_queries):
    """The dashboard lists open webhook notices and recent credit transactions."""
    client = _page_client(rich.admin_a)

    def add_rows():
        with tenant_context(rich.org_a):
            for _ in range(2):
                n = next(_numbers)
                # One open notice of a kind per endpoint: an endpoint each.
                endpoint, _ = webhook_endpoint_create(
                    url=f"http://127.0.0.1:9/qc-{n}", event_types=["job.completed"]
                )
                WebhookNotice.objects.create(endpoint=endpoint, kind="failing", message=f"qc-notice {n}")
                credits_grant(amount=1, reason=f"qc-grant {n}", actor_label="operator:tests")

    add_rows()
    assert_queries_do_not_grow(
        lambda: client.get("/"), add_rows, html_count("qc-"), django_assert_max_num_queries
    )
