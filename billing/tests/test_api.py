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
from billing.services import (
    credits_charge_reserved,
    credits_deduct,
    credits_grant,
    credits_refund,
    credits_release,
    credits_reserve,
)
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


def test_credits_shows_the_available_and_the_reserved_balance(world, api_as):
    audit = uuid.uuid4()
    with tenant_context(world.org_a):
        credits_grant(amount=100, reason="seed", actor_label="operator:tests")
        credits_reserve(audit_id=audit, amount=30, actor_label="user:x")
        credits_charge_reserved(audit_id=audit, amount=10, actor_label="audit:x")
    data = api_as(world.member_a).get("/api/v1/credits").json()["data"]
    assert (data["balance"], data["reserved"]) == (70, 20)
    charge, reservation = data["recent_transactions"][:2]
    assert (charge["kind"], charge["amount"], charge["reserved_change"]) == ("audit_charge", 0, -10)
    assert (charge["balance_after"], charge["reserved_after"]) == (70, 20)
    assert charge["audit_id"] == str(audit)
    assert (reservation["kind"], reservation["amount"], reservation["reserved_change"]) == (
        "reservation",
        -30,
        30,
    )
    assert api_as(world.member_b).get("/api/v1/credits").json()["data"]["reserved"] == 0


def test_transactions_filter_by_the_audit_kinds(world, api_as):
    audit = uuid.uuid4()
    with tenant_context(world.org_a):
        credits_grant(amount=100, reason="seed", actor_label="operator:tests")
        credits_reserve(audit_id=audit, amount=30, actor_label="user:x")
        credits_charge_reserved(audit_id=audit, amount=10, actor_label="audit:x")
        credits_release(audit_id=audit, amount=20, actor_label="audit:x", reason="completed")
    client = api_as(world.member_a)
    for version in ("v1", "v2"):
        rows = client.get(
            f"/api/{version}/credits/transactions?kind=reservation,audit_charge,release"
        ).json()["data"]
        assert [r["kind"] for r in rows] == ["release", "audit_charge", "reservation"]
        assert {r["audit_id"] for r in rows} == {str(audit)}
        assert [r["reserved_after"] for r in rows] == [0, 20, 30]
    grant = client.get("/api/v1/credits/transactions?kind=grant").json()["data"][0]
    assert (grant["reserved_change"], grant["reserved_after"], grant["audit_id"]) == (0, 0, None)


def test_balance_fragment_shows_the_reserved_credits_only_when_there_are_some(world, client):
    client.force_login(world.member_a)
    with tenant_context(world.org_a):
        credits_grant(amount=100, reason="seed", actor_label="operator:tests")
    fragment = client.get("/partials/balance", HTTP_HX_REQUEST="true").content.decode()
    assert "<span data-balance>100</span>" in fragment
    assert "data-reserved" not in fragment
    with tenant_context(world.org_a):
        credits_reserve(audit_id=uuid.uuid4(), amount=40, actor_label="user:x")
    fragment = client.get("/partials/balance", HTTP_HX_REQUEST="true").content.decode()
    assert "<span data-balance>60</span>" in fragment
    assert "<span data-reserved>40</span>" in fragment


def test_admin_organisation_page_shows_the_reserved_balance_and_audit_rows(world, client):
    audit = uuid.uuid4()
    with tenant_context(world.org_a):
        credits_grant(amount=50, reason="seed", actor_label="operator:tests")
        credits_reserve(audit_id=audit, amount=20, actor_label="user:x")
    client.force_login(User.objects.create_superuser("root@nexus.test", "operator-password-123"))
    page = client.get(f"/admin/tenants/organisation/{world.org_a.pk}/change/").content.decode()
    assert "30 available, 20 reserved for audits" in page
    assert f"reserved +20 → 20, audit {audit}" in page
    assert "reservation" in page
