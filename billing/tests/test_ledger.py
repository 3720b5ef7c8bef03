"""The ledger's invariants, held by the database, and the services that write it."""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django_tenants.utils import tenant_context

from billing.models import CreditBalance, CreditTransaction, TransactionKind
from billing.selectors import credits_balance, credits_ledger_sum
from billing.services import (
    InsufficientCredits,
    credits_adjust,
    credits_deduct,
    credits_grant,
    credits_refund,
)
from nexus.api.errors import Conflict, NotFound, ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_a(world):
    with tenant_context(world.org_a):
        yield world.org_a


def _grant(amount=100):
    return credits_grant(amount=amount, reason="test", actor_label="operator:tests")


def test_new_organisation_starts_at_zero(org_a):
    assert credits_balance() == 0
    assert CreditTransaction.objects.count() == 0


def test_grant_deduct_refund_keep_balance_equal_to_ledger_sum(org_a):
    job = uuid.uuid4()
    _grant(100)
    credits_deduct(job_id=job, amount=25, actor_label="user:x")
    assert credits_balance() == 75
    refund = credits_refund(job_id=job, reason="failed")
    assert refund.amount == 25
    assert refund.kind == TransactionKind.REFUND
    assert credits_balance() == 100 == credits_ledger_sum()
    rows = list(CreditTransaction.objects.order_by("sequence"))
    assert [r.sequence for r in rows] == [1, 2, 3]
    assert [r.balance_after for r in rows] == [100, 75, 100]
    assert all(r.previous_balance + r.amount == r.balance_after for r in rows)


def test_insufficient_credits_writes_nothing(org_a):
    _grant(5)
    with pytest.raises(InsufficientCredits) as caught:
        credits_deduct(job_id=uuid.uuid4(), amount=10, actor_label="user:x")
    assert caught.value.details == {"balance": 5, "required": 10}
    assert caught.value.status_code == 402
    assert CreditTransaction.objects.count() == 1
    assert credits_balance() == 5


def test_second_deduction_for_a_job_is_refused(org_a):
    job = uuid.uuid4()
    _grant(100)
    credits_deduct(job_id=job, amount=10, actor_label="user:x")
    with pytest.raises(Conflict), transaction.atomic():
        credits_deduct(job_id=job, amount=10, actor_label="user:x")
    assert credits_balance() == 90


def test_refund_is_idempotent(org_a):
    job = uuid.uuid4()
    _grant(100)
    credits_deduct(job_id=job, amount=10, actor_label="user:x")
    first = credits_refund(job_id=job, reason="r")
    second = credits_refund(job_id=job, reason="r")
    assert first.pk == second.pk
    assert credits_balance() == 100
    assert CreditTransaction.objects.filter(kind=TransactionKind.REFUND).count() == 1


def test_refund_without_deduction_is_not_found(org_a):
    with pytest.raises(NotFound):
        credits_refund(job_id=uuid.uuid4(), reason="r")


@pytest.mark.parametrize("amount", [0, -5, 1_000_001, True, 2.5])
def test_grant_refuses_bad_amounts(org_a, amount):
    with pytest.raises(ValidationFailed):
        credits_grant(amount=amount, reason="r", actor_label="operator:x")


def test_grant_requires_a_reason(org_a):
    with pytest.raises(ValidationFailed):
        credits_grant(amount=5, reason="  ", actor_label="operator:x")


def test_negative_adjustment_cannot_overdraw(org_a):
    _grant(10)
    with pytest.raises(InsufficientCredits):
        credits_adjust(amount=-11, reason="correction", actor_label="operator:x")
    credits_adjust(amount=-10, reason="correction", actor_label="operator:x")
    assert credits_balance() == 0


# --- The database refuses what the services never do ---------------------------------------


def _raw(sql, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(sql, params)


def test_database_refuses_a_negative_balance(org_a):
    _grant(10)
    with pytest.raises(IntegrityError):
        _raw("UPDATE billing_creditbalance SET balance = -1")


def test_database_refuses_editing_a_ledger_row(org_a):
    _grant(10)
    _grant(5)
    with pytest.raises(IntegrityError):
        _raw("UPDATE billing_credittransaction SET amount = 1000, balance_after = 1000 WHERE sequence = 1")
    with pytest.raises(IntegrityError):
        _raw("UPDATE billing_credittransaction SET amount = 6, balance_after = 16 WHERE sequence = 2")


def test_database_refuses_deleting_a_ledger_row(org_a):
    _grant(10)
    _grant(5)
    with pytest.raises(IntegrityError):
        _raw("DELETE FROM billing_credittransaction WHERE sequence = 2")
    with pytest.raises(IntegrityError):
        _raw("DELETE FROM billing_credittransaction WHERE sequence = 1")


def test_database_refuses_a_balance_that_is_not_the_ledger_sum(org_a):
    _grant(10)
    with pytest.raises(IntegrityError):
        _raw("UPDATE billing_creditbalance SET balance = 50")


def test_database_refuses_a_row_that_skips_the_chain(org_a):
    _grant(10)
    with pytest.raises(IntegrityError):
        _raw(
            "INSERT INTO billing_credittransaction (id, sequence, previous_sequence, kind, amount, "
            "previous_balance, balance_after, reference, actor_label, created_at) "
            "VALUES (gen_random_uuid(), 2, 1, 'grant', 500, 0, 500, '', 'x', now())"
        )


def test_database_refuses_a_chained_row_the_balance_does_not_follow(org_a):
    _grant(10)
    with pytest.raises(IntegrityError):
        _raw(
            "INSERT INTO billing_credittransaction (id, sequence, previous_sequence, kind, amount, "
            "previous_balance, balance_after, reference, actor_label, created_at) "
            "VALUES (gen_random_uuid(), 2, 1, 'grant', 500, 10, 510, '', 'x', now())"
        )
    assert credits_balance() == 10
    _grant(5)  # the ledger is still writable
    assert credits_balance() == 15


def test_database_refuses_pointing_the_balance_at_an_older_row(org_a):
    _grant(10)
    _grant(5)
    with pytest.raises(IntegrityError):
        _raw("UPDATE billing_creditbalance SET last_sequence = 1, balance = 10")


def test_database_refuses_editing_any_column_of_a_ledger_row(org_a):
    _grant(10)
    for assignment in (
        "reference = 'forged'",
        "actor_label = 'someone else'",
        "kind = 'purchase'",
        "created_at = now()",
    ):
        with pytest.raises(IntegrityError):
            _raw(f"UPDATE billing_credittransaction SET {assignment}")  # nosec B608


def test_balance_check_runs_at_commit_so_services_may_write_in_either_order(org_a):
    """The deferred check sees the whole transaction: a row and its balance move together."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_credittransaction (id, sequence, previous_sequence, kind, amount, "
            "previous_balance, balance_after, reference, actor_label, created_at) "
            "VALUES (gen_random_uuid(), 1, NULL, 'grant', 7, 0, 7, '', 'x', now())"
        )
        cursor.execute("UPDATE billing_creditbalance SET last_sequence = 1, balance = 7")
    assert credits_balance() == 7


def test_database_refuses_a_second_refund(org_a):
    job = uuid.uuid4()
    _grant(10)
    credits_deduct(job_id=job, amount=5, actor_label="x")
    credits_refund(job_id=job, reason="r")
    balance = CreditBalance.objects.get()
    with pytest.raises(IntegrityError):
        _raw(
            "INSERT INTO billing_credittransaction (id, sequence, previous_sequence, kind, amount, "
            "previous_balance, balance_after, job_id, reference, actor_label, created_at) "
            "VALUES (gen_random_uuid(), %s, %s, 'refund', 5, %s, %s, %s, '', 'x', now())",
            [balance.last_sequence + 1, balance.last_sequence, balance.balance, balance.balance + 5, job],
        )


def test_ledgers_are_per_organisation(world):
    with tenant_context(world.org_a):
        _grant(70)
    with tenant_context(world.org_b):
        assert credits_balance() == 0
        _grant(3)
    with tenant_context(world.org_a):
        assert credits_balance() == 70
