"""Migration 0005 (the reserved balance) on a ledger that already has rows: they reserve
nothing, the chain still holds, and the new services write after them."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction
from billing.selectors import credits_balances
from billing.services import credits_deduct, credits_reserve

pytestmark = pytest.mark.django_db

BEFORE = [("billing", "0004_ledger_append_only")]
AFTER = [("billing", "0005_reserved_balance")]


def _ledger_columns() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'billing_credittransaction'",
            [connection.schema_name],
        )
        return {name for (name,) in cursor.fetchall()}


def test_existing_ledger_rows_reserve_nothing_after_the_migration(world):
    with tenant_context(world.org_a):
        MigrationExecutor(connection).migrate(BEFORE)
        assert "reserved_after" not in _ledger_columns()
        with connection.cursor() as cursor:
            # A ledger as 0004 left it: a grant and a job's deduction, the balance on the last.
            cursor.execute(
                "INSERT INTO billing_credittransaction (id, sequence, previous_sequence, kind, amount, "
                "previous_balance, balance_after, job_id, reference, actor_label, created_at) VALUES "
                "(gen_random_uuid(), 1, NULL, 'grant', 100, 0, 100, NULL, 'seed', 'operator:x', now()), "
                "(gen_random_uuid(), 2, 1, 'deduction', -10, 100, 90, %s, 'job', 'user:x', now())",
                [uuid.uuid4()],
            )
            cursor.execute("UPDATE billing_creditbalance SET last_sequence = 2, balance = 90")
            # The deferred checks of these writes must run before the tables are altered.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

        MigrationExecutor(connection).migrate(AFTER)
        assert {"reserved_change", "previous_reserved", "reserved_after", "audit_id"} <= _ledger_columns()
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")

        rows = list(CreditTransaction.objects.order_by("sequence"))
        assert [(r.reserved_change, r.previous_reserved, r.reserved_after, r.audit_id) for r in rows] == [
            (0, 0, 0, None),
            (0, 0, 0, None),
        ]
        assert credits_balances() == (90, 0)
        credits_reserve(audit_id=uuid.uuid4(), amount=50, actor_label="user:x")
        credits_deduct(job_id=uuid.uuid4(), amount=40, actor_label="user:x")
        assert credits_balances() == (0, 50)
        assert CreditTransaction.objects.get(sequence=3).previous_reserved == 0
