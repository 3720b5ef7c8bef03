"""The ledger is append-only and the balance row always points at its newest row.

The chain constraints of 0002 stop a row from being edited in a way that breaks the chain
and stop rows being skipped, but a correctly chained row could still be added without
moving the balance, a balance row could point back at an older row, and columns outside
the chain (kind, job, reference, actor, time) could be edited. Two triggers close that:

- `credit_ledger_append_only`: any UPDATE or DELETE of a ledger row is refused.
- `credit_balance_is_newest`: at commit (deferred, so the service may insert the row and
  then move the balance in either order), the balance row must point at the newest ledger
  row. With 0002's foreign key (last_sequence, balance) -> (sequence, balance_after) and
  the chain, that makes the balance the sum of the ledger.

The functions live in public and find the organisation's tables through TG_TABLE_SCHEMA:
deferred triggers run at commit, whatever schema the connection was switched to by then.
Both raise integrity_constraint_violation (23000), like the constraints they complement.
"""

from django.db import migrations

FUNCTIONS = """
CREATE OR REPLACE FUNCTION public.credit_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'credit ledger rows cannot be changed or removed (%.%)', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE OR REPLACE FUNCTION public.credit_balance_is_newest() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  pointed bigint;
  newest bigint;
BEGIN
  EXECUTE format('SELECT last_sequence FROM %I.billing_creditbalance WHERE id = 1', TG_TABLE_SCHEMA)
    INTO pointed;
  EXECUTE format('SELECT max(sequence) FROM %I.billing_credittransaction', TG_TABLE_SCHEMA)
    INTO newest;
  IF newest IS DISTINCT FROM pointed THEN
    RAISE EXCEPTION 'credit balance of schema % points at ledger row %, the newest is %',
      TG_TABLE_SCHEMA, pointed, newest
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END;
$$;
"""

TRIGGERS = [
    "CREATE TRIGGER credit_ledger_append_only BEFORE UPDATE OR DELETE ON billing_credittransaction "
    "FOR EACH ROW EXECUTE FUNCTION public.credit_ledger_append_only()",
    "CREATE CONSTRAINT TRIGGER credit_ledger_balance_is_newest AFTER INSERT ON billing_credittransaction "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.credit_balance_is_newest()",
    "CREATE CONSTRAINT TRIGGER credit_balance_is_newest AFTER INSERT OR UPDATE ON billing_creditbalance "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.credit_balance_is_newest()",
]

DROP_TRIGGERS = [
    "DROP TRIGGER IF EXISTS credit_balance_is_newest ON billing_creditbalance",
    "DROP TRIGGER IF EXISTS credit_ledger_balance_is_newest ON billing_credittransaction",
    "DROP TRIGGER IF EXISTS credit_ledger_append_only ON billing_credittransaction",
]


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_purchases")]

    operations = [
        migrations.RunSQL(sql=[FUNCTIONS, *TRIGGERS], reverse_sql=DROP_TRIGGERS),
    ]
