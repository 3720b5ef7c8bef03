"""Member lists answer in a fixed number of queries, however many members there are
(docs/specs/foundation.md, "Query counts")."""

import itertools

import pytest
from django.test import Client

from nexus.tests.query_counts import api_rows, assert_queries_do_not_grow, html_count
from tenants.models import Role
from tenants.services import user_create

pytestmark = pytest.mark.django_db

_numbers = itertools.count()


def _add_members(org, how_many: int = 3) -> None:
    for _ in range(how_many):
        n = next(_numbers)
        user_create(email=f"qc-{n}@{org.email_domain}", organisation=org, role=Role.MEMBER, name=f"QC {n}")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_member_list_queries_do_not_grow(world, api_as, django_assert_max_num_queries, version):
    client = api_as(world.member_a)
    _add_members(world.org_a)
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/org/members"),
        lambda: _add_members(world.org_a),
        api_rows,
        django_assert_max_num_queries,
    )


def test_members_page_queries_do_not_grow(world, django_assert_max_num_queries):
    client = Client()
    client.force_login(world.admin_a)
    _add_members(world.org_a)
    assert_queries_do_not_grow(
        lambda: client.get("/members"),
        lambda: _add_members(world.org_a),
        html_count("qc-"),
        django_assert_max_num_queries,
    )
