"""Webhook lists (endpoints, an endpoint's deliveries with their attempts, the webhook
pages, the operators' admin page) answer in a fixed number of queries, however many rows
there are (docs/specs/foundation.md, "Query counts")."""

import itertools

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import tenant_context

from nexus.tests.query_counts import api_rows, assert_queries_do_not_grow, html_count
from tenants.models import User
from webhooks.models import WebhookAttempt
from webhooks.services import webhook_endpoint_create, webhook_send_test

pytestmark = pytest.mark.django_db

VERSIONS = ["v1", "v2"]
_numbers = itertools.count()


def _add_endpoints(org, how_many: int = 2) -> None:
    with tenant_context(org):
        for _ in range(how_many):
            n = next(_numbers)
            webhook_endpoint_create(
                url=f"http://127.0.0.1:9/qc-{n}", event_types=["job.completed"], description=f"qc-hook {n}"
            )


def _add_deliveries(org, endpoint, how_many: int = 3) -> None:
    """Test deliveries, each with two attempts (the list shows every attempt)."""
    with tenant_context(org):
        for _ in range(how_many):
            delivery = webhook_send_test(endpoint=endpoint)
            for number in (1, 2):
                WebhookAttempt.objects.create(
                    delivery=delivery,
                    number=number,
                    started_at=timezone.now(),
                    duration_ms=3,
                    status_code=500,
                    error=f"qc-attempt {next(_numbers)}",
                )


@pytest.fixture
def endpoint(world):
    with tenant_context(world.org_a):
        endpoint, _ = webhook_endpoint_create(
            url="http://127.0.0.1:9/qc-deliveries", event_types=["job.completed"]
        )
    return endpoint


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("version", VERSIONS)
def test_endpoint_list_queries_do_not_grow(world, api_as, django_assert_max_num_queries, version):
    client = api_as(world.member_a)
    _add_endpoints(world.org_a)
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/webhooks"),
        lambda: _add_endpoints(world.org_a),
        api_rows,
        django_assert_max_num_queries,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_delivery_list_queries_do_not_grow(world, api_as, endpoint, django_assert_max_num_queries, version):
    client = api_as(world.member_a)
    _add_deliveries(world.org_a, endpoint)
    assert_queries_do_not_grow(
        lambda: client.get(f"/api/{version}/webhooks/{endpoint.pk}/deliveries"),
        lambda: _add_deliveries(world.org_a, endpoint),
        lambda response: sum(len(d["attempts"]) for d in response.json()["data"]),
        django_assert_max_num_queries,
    )


def test_webhooks_page_queries_do_not_grow(world, django_assert_max_num_queries):
    client = _page_client(world.admin_a)
    _add_endpoints(world.org_a)
    assert_queries_do_not_grow(
        lambda: client.get("/webhooks"),
        lambda: _add_endpoints(world.org_a),
        html_count("qc-"),
        django_assert_max_num_queries,
    )


def test_deliveries_page_queries_do_not_grow(world, endpoint, django_assert_max_num_queries):
    client = _page_client(world.admin_a)
    _add_deliveries(world.org_a, endpoint)
    assert_queries_do_not_grow(
        lambda: client.get(f"/webhooks/{endpoint.pk}"),
        lambda: _add_deliveries(world.org_a, endpoint),
        html_count("qc-attempt"),
        django_assert_max_num_queries,
    )


def test_operator_webhooks_admin_page_queries_do_not_grow(world, endpoint, django_assert_max_num_queries):
    client = _page_client(User.objects.create_superuser("root@nexus.test", "operator-password-123"))
    _add_deliveries(world.org_a, endpoint)
    _add_endpoints(world.org_a)

    def add_rows():
        _add_deliveries(world.org_a, endpoint)
        _add_endpoints(world.org_a)

    assert_queries_do_not_grow(
        lambda: client.get(f"/admin/tenants/organisation/{world.org_a.pk}/webhooks/"),
        add_rows,
        lambda response: len(response.context["page"].object_list) + len(response.context["endpoints"]),
        django_assert_max_num_queries,
    )
