"""The ledger's chain: each row references its predecessor's (sequence, balance_after), and
the balance row references the last row's. Django has no composite foreign keys, so they
are SQL here. Also creates the organisation's single balance row."""

from django.db import migrations


def create_balance_row(apps, schema_editor):
    apps.get_model("billing", "CreditBalance").objects.get_or_create(pk=1, defaults={"balance": 0})


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=[
                "ALTER TABLE billing_credittransaction ADD CONSTRAINT credit_chain_previous_fk "
                "FOREIGN KEY (previous_sequence, previous_balance) "
                "REFERENCES billing_credittransaction (sequence, balance_after)",
                "ALTER TABLE billing_creditbalance ADD CONSTRAINT credit_balance_last_row_fk "
                "FOREIGN KEY (last_sequence, balance) "
                "REFERENCES billing_credittransaction (sequence, balance_after) "
                "DEFERRABLE INITIALLY DEFERRED",
            ],
            reverse_sql=[
                "ALTER TABLE billing_creditbalance DROP CONSTRAINT credit_balance_last_row_fk",
                "ALTER TABLE billing_credittransaction DROP CONSTRAINT credit_chain_previous_fk",
            ],
        ),
        migrations.RunPython(create_balance_row, migrations.RunPython.noop),
    ]
