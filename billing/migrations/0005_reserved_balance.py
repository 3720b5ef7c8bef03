"""The reserved balance: credits an audit holds while it runs (docs/specs/credits.md,
"Reservations for audits").

Ledger rows gain reserved_change, previous_reserved and reserved_after, a chain beside the
available one: reserved_after = previous_reserved + reserved_change (check), and, as 0002
does for the balance, (previous_sequence, previous_reserved) references the predecessor's
(sequence, reserved_after) and the balance row's (last_sequence, reserved) references the
newest row's (deferred). 0004's triggers need no change: they refuse any UPDATE or DELETE
of a ledger row whatever its columns, and with these keys "the balance row points at the
newest row" now fixes `reserved` too. Existing rows reserve nothing (defaults of 0, set by
the database, so no row is rewritten). Three kinds (reservation, audit_charge, release)
name their audit; their signs are checked, and an audit has at most one reservation and
one release (partial unique indexes).
"""

import django.db.models.expressions
from django.db import migrations, models

FOREIGN_KEYS = [
    "ALTER TABLE billing_credittransaction ADD CONSTRAINT credit_chain_previous_reserved_fk "
    "FOREIGN KEY (previous_sequence, previous_reserved) "
    "REFERENCES billing_credittransaction (sequence, reserved_after)",
    "ALTER TABLE billing_creditbalance ADD CONSTRAINT credit_balance_last_row_reserved_fk "
    "FOREIGN KEY (last_sequence, reserved) "
    "REFERENCES billing_credittransaction (sequence, reserved_after) "
    "DEFERRABLE INITIALLY DEFERRED",
]

# A schema migrated from nothing in one transaction (the template new organisations are
# cloned from) still has 0002's insert of the balance row waiting for its deferred foreign
# key check, and PostgreSQL refuses to ALTER a table with pending trigger events. Run that
# check now, then give the balance row's keys back their deferred mode (the services move
# the balance before they insert the row it points at).
CHECK_PENDING = "SET CONSTRAINTS credit_balance_last_row_fk IMMEDIATE"
DEFER_AGAIN = "SET CONSTRAINTS credit_balance_last_row_fk, credit_balance_last_row_reserved_fk DEFERRED"

DROP_FOREIGN_KEYS = [
    "ALTER TABLE billing_creditbalance DROP CONSTRAINT credit_balance_last_row_reserved_fk",
    "ALTER TABLE billing_credittransaction DROP CONSTRAINT credit_chain_previous_reserved_fk",
]


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_ledger_append_only"),
    ]

    operations = [
        migrations.RunSQL(sql=CHECK_PENDING, reverse_sql=migrations.RunSQL.noop),
        migrations.RemoveConstraint(
            model_name="credittransaction",
            name="credit_amount_sign_matches_kind",
        ),
        migrations.AddField(
            model_name="creditbalance",
            name="reserved",
            field=models.BigIntegerField(db_default=0),
        ),
        migrations.AddField(
            model_name="credittransaction",
            name="audit_id",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="credittransaction",
            name="previous_reserved",
            field=models.BigIntegerField(db_default=0),
        ),
        migrations.AddField(
            model_name="credittransaction",
            name="reserved_after",
            field=models.BigIntegerField(db_default=0),
        ),
        migrations.AddField(
            model_name="credittransaction",
            name="reserved_change",
            field=models.BigIntegerField(db_default=0),
        ),
        migrations.AlterField(
            model_name="credittransaction",
            name="kind",
            field=models.CharField(
                choices=[
                    ("grant", "Grant"),
                    ("purchase", "Purchase"),
                    ("deduction", "Deduction"),
                    ("refund", "Refund"),
                    ("adjustment", "Adjustment"),
                    ("reservation", "Reservation"),
                    ("audit_charge", "Audit charge"),
                    ("release", "Release"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddIndex(
            model_name="credittransaction",
            index=models.Index(
                condition=models.Q(("audit_id__isnull", False)),
                fields=["audit_id", "kind"],
                include=["reserved_change"],
                name="credit_audit_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="creditbalance",
            constraint=models.CheckConstraint(
                condition=models.Q(("reserved__gte", 0)), name="credit_reserved_not_negative"
            ),
        ),
        migrations.AddConstraint(
            model_name="creditbalance",
            constraint=models.CheckConstraint(
                condition=models.Q(("last_sequence__isnull", False), ("reserved", 0), _connector="OR"),
                name="credit_reserved_zero_without_ledger",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(("reserved_after__gte", 0)), name="credit_reserved_after_not_negative"
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "reserved_after",
                        django.db.models.expressions.CombinedExpression(
                            models.F("previous_reserved"), "+", models.F("reserved_change")
                        ),
                    )
                ),
                name="credit_reserved_after_is_previous_plus_change",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("previous_sequence__isnull", False), ("previous_reserved", 0), _connector="OR"
                ),
                name="credit_chain_reserved_starts_at_zero",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("amount__gt", 0), ("kind__in", ["grant", "purchase", "refund"])),
                    models.Q(("amount__lt", 0), ("kind", "deduction")),
                    models.Q(("kind", "adjustment"), models.Q(("amount", 0), _negated=True)),
                    models.Q(("amount__lt", 0), ("kind", "reservation")),
                    models.Q(("amount", 0), ("kind", "audit_charge")),
                    models.Q(("amount__gt", 0), ("kind", "release")),
                    _connector="OR",
                ),
                name="credit_amount_sign_matches_kind",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("kind__in", ["grant", "purchase", "refund", "deduction", "adjustment"]),
                        ("reserved_change", 0),
                    ),
                    models.Q(
                        ("kind__in", ["reservation", "release"]),
                        (
                            "reserved_change",
                            django.db.models.expressions.CombinedExpression(
                                models.F("amount"), "*", models.Value(-1)
                            ),
                        ),
                    ),
                    models.Q(("kind", "audit_charge"), ("reserved_change__lt", 0)),
                    _connector="OR",
                ),
                name="credit_reserved_change_matches_kind",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("audit_id__isnull", False), ("kind__in", ["reservation", "audit_charge", "release"])
                    ),
                    models.Q(("kind__in", ["reservation", "audit_charge", "release"]), _negated=True),
                    _connector="OR",
                ),
                name="credit_audit_rows_name_their_audit",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "reservation")),
                fields=("audit_id",),
                name="credit_one_reservation_per_audit",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "release")),
                fields=("audit_id",),
                name="credit_one_release_per_audit",
            ),
        ),
        migrations.AddConstraint(
            model_name="credittransaction",
            constraint=models.UniqueConstraint(
                fields=("sequence", "reserved_after"), name="credit_sequence_reserved_key"
            ),
        ),
        migrations.RunSQL(sql=FOREIGN_KEYS, reverse_sql=DROP_FOREIGN_KEYS),
        migrations.RunSQL(sql=DEFER_AGAIN, reverse_sql=migrations.RunSQL.noop),
    ]
