"""Credit endpoints, the grant command and the admin action."""

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction, TransactionKind
from billing.selectors import credits_balance
from billing.services import credits_deduct, credits_grant, credits_refund
from tenants.models import User

pytestmark = pytest.mark.django_db


def _fund(org, amount=100):
    with tenant_context(org):
        credits_grant(amount=amount, reason="seed", actor_label="operator:tests")


def test_credits_shows_balance_and_ten_latest(world, api_as):
    with tenant_context(world.org_a):
        for _ in range(12):
            credits_grant(amount=1, reason="drip", actor_label="operator:tests")
    data = api_as(world.member_a).get("/api/v1/credits").json()["data"]
    assert data["balance"] == 12
    assert len(data["recent_transactions"]) == 10
    assert data["recent_transactions"][0]["sequence"] == 12
    assert data["recent_transactions"][0]["actor"] == "operator:tests"


def test_transactions_paginate_and_filter_by_kind(world, api_as):
    _fund(world.org_a)
    with tenant_context(world.org_a):
        job = uuid.uuid4()
        credits_deduct(job_id=job, amount=10, actor_label="user:x")
        credits_refund(job_id=job, reason="r")
    client = api_as(world.member_a)
    body = client.get("/api/v1/credits/transactions?limit=2").json()
    assert body["meta"]["total"] == 3
    assert len(body["data"]) == 2
    kinds = [
        r["kind"] for r in client.get("/api/v1/credits/transactions?kind=deduction,refund").json()["data"]
    ]
    assert sorted(kinds) == ["deduction", "refund"]
    assert client.get("/api/v1/credits/transactions?kind=bonus").status_code == 422


def test_transactions_filter_by_date(world, api_as):
    _fund(world.org_a)
    client = api_as(world.member_a)
    today = timezone.now().date()
    assert client.get(f"/api/v1/credits/transactions?from={today}").json()["meta"]["total"] == 1
    tomorrow = today + timedelta(days=1)
    assert client.get(f"/api/v1/credits/transactions?from={tomorrow}").json()["meta"]["total"] == 0
    assert client.get("/api/v1/credits/transactions?from=yesterday").status_code == 422
    assert client.get(f"/api/v1/credits/transactions?from={tomorrow}&to={today}").status_code == 422


def test_no_api_lets_an_organisation_grant_itself_credits(world, api_as):
    client = api_as(world.admin_a)
    for path in ["/api/v1/credits", "/api/v1/credits/transactions"]:
        assert client.post(path, {"amount": 1000}, format="json").status_code == 405
    with tenant_context(world.org_a):
        assert credits_balance() == 0


def test_other_organisations_ledger_is_invisible(world, api_as):
    _fund(world.org_b, 500)
    data = api_as(world.member_a).get("/api/v1/credits").json()["data"]
    assert data["balance"] == 0
    assert data["recent_transactions"] == []


def test_grant_credits_command_names_the_operator(world):
    out = StringIO()
    call_command(
        "grant_credits",
        "--org",
        world.org_a.slug,
        "--amount",
        "250",
        "--reason",
        "welcome",
        "--operator",
        "ops-ann",
        stdout=out,
    )
    assert "balance is now 250" in out.getvalue()
    with tenant_context(world.org_a):
        row = CreditTransaction.objects.get()
    assert row.kind == TransactionKind.GRANT
    assert row.actor_label == "operator:ops-ann"
    assert row.reference == "welcome"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--org", "nope", "--amount", "5", "--reason", "r"], "No organisation"),
        (["--org", "org-a", "--amount", "0", "--reason", "r"], "positive"),
        (["--org", "org-a", "--amount", "-3", "--reason", "r"], "positive"),
        (["--org", "org-a", "--amount", "5", "--reason", " "], "reason"),
    ],
)
def test_grant_credits_command_refuses_bad_input(world, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("grant_credits", *args, stdout=StringIO())


def test_admin_grant_action_writes_a_grant_naming_the_operator(world, client):
    operator = User.objects.create_superuser("root@nexus.test", "operator-password-123")
    client.force_login(operator)
    response = client.post(
        "/admin/tenants/organisation/",
        {
            "action": "grant_credits",
            "_selected_action": [str(world.org_a.pk), str(world.org_b.pk)],
            "amount": "40",
            "reason": "pilot",
            "apply": "Grant",
        },
    )
    assert response.status_code == 302
    for org in (world.org_a, world.org_b):
        with tenant_context(org):
            row = CreditTransaction.objects.get()
            assert row.amount == 40
            assert row.actor_label == "operator:root@nexus.test"
            assert row.actor_id == operator.pk


def test_admin_organisation_page_shows_balance_and_ledger(world, client):
    _fund(world.org_a, 33)
    client.force_login(User.objects.create_superuser("root@nexus.test", "operator-password-123"))
    page = client.get(f"/admin/tenants/organisation/{world.org_a.pk}/change/")
    assert page.status_code == 200
    assert b"33" in page.content
    assert b"operator:tests" in page.content
