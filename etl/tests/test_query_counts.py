"""ETL lists (sources, runs, stats, records, the data page) answer in a fixed number of
queries, however many sources, runs and records there are (docs/specs/foundation.md,
"Query counts"). /api/v1/etl/stats used to run one query per source."""

import itertools
import uuid

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from etl.models import DataSource, EtlRun, Record
from nexus.tests.query_counts import api_rows, assert_queries_do_not_grow, html_count

pytestmark = pytest.mark.django_db

VERSIONS = ["v1", "v2"]
_numbers = itertools.count()


def _add_sources(org, how_many: int = 3) -> None:
    """Sources, each with a finished run, a queued one and a record: every figure of the
    stats (and every related row a list shows) has something to load."""
    now = timezone.now()
    with tenant_context(org):
        for _ in range(how_many):
            n = next(_numbers)
            source = DataSource.objects.create(
                name=f"qc-source-{n}",
                kind="csv",
                config={"url": f"https://qc-{n}.example/feed.csv"},
                field_mapping={"external_id": "id", "title": "title"},
            )
            run = EtlRun.objects.create(
                source=source, trigger="manual", status="succeeded", finished_at=now, fetched=2, duration_ms=5
            )
            EtlRun.objects.create(source=source, trigger="schedule", status="queued")
            Record.objects.create(
                source=source,
                external_id=uuid.uuid4().hex,
                title=f"qc-record-{n}",
                content_hash="0" * 40,
                published_at=now,
                first_seen_run=run,
                last_updated_run=run,
            )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", ["etl/sources", "etl/runs", "etl/stats", "data"])
def test_etl_list_queries_do_not_grow(world, api_as, django_assert_max_num_queries, version, path):
    client = api_as(world.member_a)
    _add_sources(world.org_a)
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/{path}"),
        lambda: _add_sources(world.org_a),
        api_rows,
        django_assert_max_num_queries,
    )


def test_stats_answer_in_two_queries_whatever_the_number_of_sources(world, django_assert_num_queries):
    from etl.selectors import source_stats

    _add_sources(world.org_a, how_many=5)
    with tenant_context(world.org_a):
        source_stats()  # the first query in the schema also sets the search path
        with django_assert_num_queries(2):
            rows = source_stats()
    assert len(rows) == 5
    assert {(row["last_status"], row["last_duration_ms"], row["records"], row["runs"]) for row in rows} == {
        ("succeeded", 5, 1, 1)
    }


def test_data_page_queries_do_not_grow(world, django_assert_max_num_queries):
    client = Client()
    client.force_login(world.admin_a)
    _add_sources(world.org_a)
    assert_queries_do_not_grow(
        lambda: client.get("/data"),
        lambda: _add_sources(world.org_a),
        html_count("qc-"),
        django_assert_max_num_queries,
    )
