"""Billing lists (credits with recent transactions, the ledger, credit packs, purchases,
the billing page) answer in a fixed number of queries, however many rows there are
(docs/specs/foundation.md, "Query counts")."""

import itertools
import uuid

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billing.models import Purchase
from billing.public.models import CreditPack
from billing.services import credits_grant
from nexus.tests.query_counts import api_rows, assert_queries_do_not_grow, html_count

pytestmark = pytest.mark.django_db

VERSIONS = ["v1", "v2"]
_numbers = itertools.count()


def _add_grants(org, how_many: int = 3) -> None:
    with tenant_context(org):
        for _ in range(how_many):
            credits_grant(amount=1, reason=f"qc-grant {next(_numbers)}", actor_label="operator:tests")


def _add_purchases(world, how_many: int = 3) -> None:
    with tenant_context(world.org_a):
        for _ in range(how_many):
            Purchase.objects.create(
                pack_id=uuid.uuid4(),
                pack_name=f"qc-pack {next(_numbers)}",
                credits=100,
                amount_cents=500,
                currency="usd",
                created_by_id=world.admin_a.pk,
            )


def _add_packs(how_many: int = 2) -> None:
    for _ in range(how_many):
        n = next(_numbers)
        CreditPack.objects.create(name=f"qc-pack {n}", credits=10 + n, price_cents=100 + n, sort_order=99)


@pytest.mark.parametrize("version", VERSIONS)
def test_transaction_lists_queries_do_not_grow(world, api_as, django_assert_max_num_queries, version):
    client = api_as(world.member_a)
    _add_grants(world.org_a)
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/credits/transactions"),
        lambda: _add_grants(world.org_a),
        api_rows,
        django_assert_max_num_queries,
    )
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/credits"),
        lambda: _add_grants(world.org_a, how_many=1),
        lambda response: len(response.json()["data"]["recent_transactions"]),
        django_assert_max_num_queries,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_purchase_list_queries_do_not_grow(world, api_as, django_assert_max_num_queries, version):
    client = api_as(world.member_a)
    _add_purchases(world)
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/billing/purchases"),
        lambda: _add_purchases(world),
        api_rows,
        django_assert_max_num_queries,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_pack_list_queries_do_not_grow(world, api_as, django_assert_max_num_queries, version):
    client = api_as(world.member_a)
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/billing/packs"),
        _add_packs,
        api_rows,
        django_assert_max_num_queries,
    )


def test_billing_page_queries_do_not_grow(world, django_assert_max_num_queries):
    client = Client()
    client.force_login(world.admin_a)
    _add_purchases(world)

    def add_rows():
        _add_purchases(world)
        _add_packs()

    assert_queries_do_not_grow(
        lambda: client.get("/billing"), add_rows, html_count("qc-pack"), django_assert_max_num_queries
    )
