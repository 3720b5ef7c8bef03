"""Credits reserved for audits: reserve, charge from the reservation, release the rest
(docs/specs/credits.md, "Reservations for audits"). The services' rules, the invariants
after a mixed sequence, and what the database refuses when the services are bypassed."""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django_tenants.utils import tenant_context

from billing.models import CreditBalance, CreditTransaction, TransactionKind
from billing.selectors import (
    audit_credits,
    credits_balance,
    credits_balances,
    credits_ledger_reserved_sum,
    credits_ledger_sum,
    credits_reserved,
    credits_spent_per_day,
)
from billing.services import (
    InsufficientCredits,
    credits_adjust,
    credits_charge_reserved,
    credits_deduct,
    credits_grant,
    credits_refund,
    credits_release,
    credits_reserve,
)
from nexus.api.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db

AUDIT = "audit:tests"


@pytest.fixture
def org_a(world):
    with tenant_context(world.org_a):
        yield world.org_a


def _grant(amount=100):
    return credits_grant(amount=amount, reason="test", actor_label="operator:tests")


def _reserve(audit_id, amount):
    return credits_reserve(audit_id=audit_id, amount=amount, actor_label="user:tests")


def _charge(audit_id, amount):
    return credits_charge_reserved(audit_id=audit_id, amount=amount, actor_label=AUDIT)


def _release(audit_id, amount):
    return credits_release(audit_id=audit_id, amount=amount, actor_label=AUDIT, reason="audit ended")


def _ledger_count():
    return CreditTransaction.objects.count()


# --- Reserve ---------------------------------------------------------------------------------


def test_a_reservation_moves_credits_from_available_to_reserved(org_a):
    audit = uuid.uuid4()
    _grant(100)
    row = _reserve(audit, 60)
    assert (row.kind, row.amount, row.reserved_change) == (TransactionKind.RESERVATION, -60, 60)
    assert (row.previous_balance, row.balance_after) == (100, 40)
    assert (row.previous_reserved, row.reserved_after) == (0, 60)
    assert row.audit_id == audit
    assert credits_balance() == 40
    assert credits_reserved() == 60
    assert credits_balances() == (40, 60)
    assert audit_credits(audit) == {"reserved": 60, "charged": 0, "released": 0}


def test_a_reservation_the_available_balance_cannot_pay_is_402_and_writes_nothing(org_a):
    _grant(50)
    before = _ledger_count()
    with transaction.atomic():
        with pytest.raises(InsufficientCredits) as caught:
            _reserve(uuid.uuid4(), 51)
        # The caller's transaction is still usable: an audit's creation can report the 402
        # or go on.
        _grant(1)
    assert caught.value.status_code == 402
    assert caught.value.code == "PAYMENT_REQUIRED"
    assert caught.value.details == {"balance": 50, "required": 51}
    assert _ledger_count() == before + 1
    assert not CreditTransaction.objects.filter(kind=TransactionKind.RESERVATION).exists()
    assert credits_balances() == (51, 0)


def test_credits_already_reserved_are_not_available_to_another_reservation(org_a):
    _grant(100)
    _reserve(uuid.uuid4(), 70)
    with pytest.raises(InsufficientCredits) as caught:
        _reserve(uuid.uuid4(), 31)
    assert caught.value.details == {"balance": 30, "required": 31}
    _reserve(uuid.uuid4(), 30)
    assert credits_balances() == (0, 100)


def test_an_insufficient_credits_error_may_carry_the_callers_details():
    error = InsufficientCredits(balance=5, required=40, price_per_item=2, items=20)
    assert error.details == {"balance": 5, "required": 40, "price_per_item": 2, "items": 20}


def test_an_audit_reserves_once(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 10)
    with pytest.raises(Conflict):
        _reserve(audit, 10)
    assert credits_balances() == (90, 10)
    assert CreditTransaction.objects.filter(kind=TransactionKind.RESERVATION).count() == 1


@pytest.mark.parametrize("amount", [0, -5, True, 2.5, "10", 1_000_000_001])
def test_a_reservation_refuses_bad_amounts(org_a, amount):
    _grant(100)
    with pytest.raises(ValidationFailed):
        _reserve(uuid.uuid4(), amount)
    assert credits_balances() == (100, 0)


def test_jobs_spend_the_available_balance_only(org_a):
    """A job's deduction never touches what audits hold: it is checked against, and takes
    from, the available balance."""
    job = uuid.uuid4()
    _grant(100)
    _reserve(uuid.uuid4(), 80)
    with pytest.raises(InsufficientCredits) as caught:
        credits_deduct(job_id=job, amount=30, actor_label="user:x")
    assert caught.value.details == {"balance": 20, "required": 30}
    credits_deduct(job_id=job, amount=20, actor_label="user:x")
    assert credits_balances() == (0, 80)
    with pytest.raises(InsufficientCredits):
        credits_adjust(amount=-1, reason="correction", actor_label="operator:x")
    credits_refund(job_id=job, reason="failed")
    assert credits_balances() == (20, 80)


# --- Charge ----------------------------------------------------------------------------------


def test_batches_are_charged_from_the_audits_reservation(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 30)
    first = _charge(audit, 10)
    assert (first.kind, first.amount, first.reserved_change) == (TransactionKind.AUDIT_CHARGE, 0, -10)
    assert (first.balance_after, first.reserved_after) == (70, 20)
    _charge(audit, 20)
    assert credits_balances() == (70, 0)
    assert audit_credits(audit) == {"reserved": 30, "charged": 30, "released": 0}


def test_a_charge_beyond_the_audits_reservation_is_refused_and_writes_nothing(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 30)
    _charge(audit, 25)
    before = _ledger_count()
    with transaction.atomic():
        with pytest.raises(Conflict) as caught:
            _charge(audit, 6)
        _charge(audit, 5)  # the caller's transaction is still usable
    assert caught.value.status_code == 409
    assert caught.value.details == {"reserved": 5, "required": 6}
    assert _ledger_count() == before + 1
    assert audit_credits(audit) == {"reserved": 30, "charged": 30, "released": 0}


def test_an_audit_cannot_be_charged_from_another_audits_reservation(org_a):
    """The organisation holds 50 reserved credits, but this audit holds none of them."""
    _grant(100)
    _reserve(uuid.uuid4(), 50)
    with pytest.raises(Conflict) as caught:
        _charge(uuid.uuid4(), 1)
    assert caught.value.details == {"reserved": 0, "required": 1}
    assert credits_balances() == (50, 50)


def test_a_charge_of_nothing_writes_nothing(org_a):
    audit = uuid.uuid4()
    _grant(10)
    _reserve(audit, 10)
    before = _ledger_count()
    assert _charge(audit, 0) is None
    assert _ledger_count() == before


@pytest.mark.parametrize("amount", [-1, True, 1.0, 1_000_000_001])
def test_a_charge_refuses_bad_amounts(org_a, amount):
    audit = uuid.uuid4()
    _grant(10)
    _reserve(audit, 10)
    with pytest.raises(ValidationFailed):
        _charge(audit, amount)


# --- Release ---------------------------------------------------------------------------------


def test_the_release_gives_what_is_left_back_to_the_available_balance(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 40)
    _charge(audit, 15)
    row = _release(audit, 25)
    assert (row.kind, row.amount, row.reserved_change) == (TransactionKind.RELEASE, 25, -25)
    assert row.reference == "audit ended"
    assert credits_balances() == (85, 0)
    assert audit_credits(audit) == {"reserved": 40, "charged": 15, "released": 25}


def test_an_audit_releases_once(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 40)
    _release(audit, 10)
    with pytest.raises(Conflict, match="already been released"):
        _release(audit, 10)
    assert credits_balances() == (70, 30)
    assert CreditTransaction.objects.filter(kind=TransactionKind.RELEASE).count() == 1


def test_a_release_of_more_than_the_audit_holds_is_refused(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 40)
    _charge(audit, 35)
    with pytest.raises(Conflict) as caught:
        _release(audit, 6)
    assert caught.value.details == {"reserved": 5, "required": 6}
    with pytest.raises(Conflict):
        _release(uuid.uuid4(), 1)  # an audit that reserved nothing
    assert credits_balances() == (60, 5)
    _release(audit, 5)
    assert credits_balances() == (65, 0)


def test_a_release_of_nothing_writes_nothing(org_a):
    audit = uuid.uuid4()
    _grant(10)
    _reserve(audit, 10)
    _charge(audit, 10)
    before = _ledger_count()
    assert _release(audit, 0) is None
    assert _ledger_count() == before


def test_batches_in_flight_when_an_audit_is_cancelled_still_charge_what_is_left(org_a):
    """Cancel releases the pending items' credits at once; the batches already claimed keep
    theirs and charge them when they commit, and nothing more."""
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 10)
    _charge(audit, 3)
    _release(audit, 5)  # cancelled: 5 items were still pending, 2 are in a batch in flight
    _charge(audit, 2)
    with pytest.raises(Conflict):
        _charge(audit, 1)
    assert audit_credits(audit) == {"reserved": 10, "charged": 5, "released": 5}
    assert credits_balances() == (95, 0)


def test_audit_charges_count_as_spending_and_reservations_do_not(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 40)
    _charge(audit, 15)
    _release(audit, 25)
    credits_deduct(job_id=uuid.uuid4(), amount=7, actor_label="user:x")
    assert credits_spent_per_day(days=1)[-1][1] == 15 + 7


# --- The invariant ---------------------------------------------------------------------------


def _assert_ledger_invariants(audits_ended, audits_running):
    """Exactly what the database and the services keep, whatever the order of writes:

    - available balance == sum(amount) and reserved balance == sum(reserved_change);
    - so available + reserved == sum(amount + reserved_change) == credits added (grants,
      purchases, refunds, adjustments) - deductions - audit charges;
    - every row: balance_after = previous_balance + amount and reserved_after =
      previous_reserved + reserved_change, each previous_* being the previous row's *_after;
    - every audit: reserved == charged + released + what it still holds, so an ended audit
      (released) holds nothing: reserved == charged + released; and the reserved balance is
      the sum of what the running audits hold.
    """
    balance, reserved = credits_balances()
    rows = list(CreditTransaction.objects.order_by("sequence"))
    assert balance == credits_ledger_sum() == sum(r.amount for r in rows)
    assert reserved == credits_ledger_reserved_sum() == sum(r.reserved_change for r in rows)
    added = sum(
        r.amount
        for r in rows
        if r.kind
        in (
            TransactionKind.GRANT,
            TransactionKind.PURCHASE,
            TransactionKind.REFUND,
            TransactionKind.ADJUSTMENT,
        )
    )
    deducted = -sum(r.amount for r in rows if r.kind == TransactionKind.DEDUCTION)
    charged = -sum(r.reserved_change for r in rows if r.kind == TransactionKind.AUDIT_CHARGE)
    assert balance + reserved == added - deducted - charged
    previous_balance = previous_reserved = 0
    for number, row in enumerate(rows, start=1):
        assert row.sequence == number
        assert row.previous_balance == previous_balance and row.previous_reserved == previous_reserved
        assert row.balance_after == row.previous_balance + row.amount >= 0
        assert row.reserved_after == row.previous_reserved + row.reserved_change >= 0
        previous_balance, previous_reserved = row.balance_after, row.reserved_after
    assert (balance, reserved) == (previous_balance, previous_reserved)
    for audit in audits_ended:
        totals = audit_credits(audit)
        assert totals["reserved"] == totals["charged"] + totals["released"]
    held = 0
    for audit in audits_running:
        totals = audit_credits(audit)
        assert totals["released"] == 0
        held += totals["reserved"] - totals["charged"]
    assert reserved == held


def test_the_ledger_invariants_hold_after_a_mixed_sequence(org_a):
    first, second, third, fourth = (uuid.uuid4() for _ in range(4))
    job, other_job = uuid.uuid4(), uuid.uuid4()
    _grant(500)
    _reserve(first, 120)
    credits_deduct(job_id=job, amount=30, actor_label="user:x")
    _charge(first, 20)
    _reserve(second, 200)
    _charge(second, 50)
    _charge(first, 20)
    credits_refund(job_id=job, reason="failed")
    credits_adjust(amount=-15, reason="correction", actor_label="operator:x")
    with pytest.raises(InsufficientCredits):
        _reserve(third, 10_000)
    _reserve(third, 100)
    _release(first, 80)  # completed early: 80 of its items were never evaluated
    credits_deduct(job_id=other_job, amount=45, actor_label="user:x")
    _charge(third, 100)
    _release(third, 0)  # completed: everything was evaluated, nothing to give back
    with pytest.raises(Conflict):
        _charge(second, 151)
    _charge(second, 150)
    _release(second, 0)
    _reserve(fourth, 60)
    _charge(fourth, 5)
    _assert_ledger_invariants(audits_ended=[first, second, third], audits_running=[fourth])
    assert credits_balances() == (500 - 120 - 30 - 200 + 30 - 15 - 100 + 80 - 45 - 60, 55)


# --- The database refuses what the services never do ------------------------------------------


def _raw(sql, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(sql, params)


def _append_raw(*, kind="reservation", amount=-2, reserved_change=2, audit_id="new", **overrides):
    """Insert a ledger row after the newest one, by SQL, and move the balance row to it, as
    a service would; then run the deferred checks. The *_after columns follow from the
    changes unless given. Without arguments the row is a valid reservation (see the test of
    this helper), so what a test passes is the only fault."""
    balance = CreditBalance.objects.get()
    row = {
        "sequence": (balance.last_sequence or 0) + 1,
        "previous_sequence": balance.last_sequence,
        "kind": kind,
        "amount": amount,
        "previous_balance": balance.balance,
        "reserved_change": reserved_change,
        "previous_reserved": balance.reserved,
        "audit_id": uuid.uuid4() if audit_id == "new" else audit_id,
        **overrides,
    }
    row.setdefault("balance_after", row["previous_balance"] + amount)
    row.setdefault("reserved_after", row["previous_reserved"] + reserved_change)
    columns = ", ".join(row)
    values = ", ".join(["%s"] * len(row))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO billing_credittransaction (id, {columns}, reference, actor_label, created_at) "  # nosec B608
            f"VALUES (gen_random_uuid(), {values}, '', 'x', now())",
            list(row.values()),
        )
        cursor.execute(
            "UPDATE billing_creditbalance SET last_sequence = %s, balance = %s, reserved = %s",
            [row["sequence"], row["balance_after"], row["reserved_after"]],
        )
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # Back to the declared modes for the rest of the test's transaction.
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _refused(constraint, **row):
    with pytest.raises(IntegrityError) as caught:
        _append_raw(**row)
    assert constraint in str(caught.value), caught.value


@pytest.fixture
def holding(org_a):
    """10 credits granted, 5 of them reserved by an audit: available 5, reserved 5."""
    _grant(10)
    _reserve(uuid.uuid4(), 5)
    return credits_balances()


def test_the_raw_append_helper_writes_a_valid_row(holding):
    _append_raw()
    assert credits_balances() == (3, 7)


SIGNS = "credit_amount_sign_matches_kind"
RESERVED_SIGNS = "credit_reserved_change_matches_kind"
NAMES_AUDIT = "credit_audit_rows_name_their_audit"


@pytest.mark.parametrize(
    "row,constraint",
    [
        # reservation: amount < 0, reserved_change = -amount, names its audit
        ({"amount": 2, "reserved_change": -2}, SIGNS),
        ({"amount": -2, "reserved_change": 1}, RESERVED_SIGNS),
        ({"audit_id": None}, NAMES_AUDIT),
        # audit_charge: amount = 0, reserved_change < 0, names its audit
        ({"kind": "audit_charge", "amount": -1, "reserved_change": -1}, SIGNS),
        ({"kind": "audit_charge", "amount": 0, "reserved_change": 0}, RESERVED_SIGNS),
        ({"kind": "audit_charge", "amount": 0, "reserved_change": 3}, RESERVED_SIGNS),
        ({"kind": "audit_charge", "amount": 0, "reserved_change": -1, "audit_id": None}, NAMES_AUDIT),
        # release: amount > 0, reserved_change = -amount, names its audit
        ({"kind": "release", "amount": -2, "reserved_change": 2}, SIGNS),
        ({"kind": "release", "amount": 2, "reserved_change": 0}, RESERVED_SIGNS),
        ({"kind": "release", "amount": 2, "reserved_change": -1}, RESERVED_SIGNS),
        ({"kind": "release", "amount": 2, "reserved_change": -2, "audit_id": None}, NAMES_AUDIT),
        # every other kind leaves the reserved balance alone
        ({"kind": "grant", "amount": 5, "reserved_change": 5, "audit_id": None}, RESERVED_SIGNS),
        ({"kind": "adjustment", "amount": 3, "reserved_change": -3, "audit_id": None}, RESERVED_SIGNS),
        (
            {
                "kind": "deduction",
                "amount": -2,
                "reserved_change": 2,
                "audit_id": None,
                "job_id": uuid.uuid4(),
            },
            RESERVED_SIGNS,
        ),
        # the reserved chain: each row adds its change to its predecessor's reserved_after
        ({"reserved_after": 8}, "credit_reserved_after_is_previous_plus_change"),
        ({"previous_reserved": 4}, "credit_chain_previous_reserved_fk"),
        # more than is reserved cannot be charged or released
        ({"kind": "audit_charge", "amount": 0, "reserved_change": -6}, "credit_reserved_after_not_negative"),
        ({"kind": "release", "amount": 6, "reserved_change": -6}, "credit_reserved_after_not_negative"),
    ],
)
def test_database_refuses_a_row_that_breaks_the_reserved_rules(holding, row, constraint):
    before = _ledger_count()
    _refused(constraint, **row)
    assert _ledger_count() == before
    assert credits_balances() == holding == (5, 5)


def test_database_refuses_a_first_row_that_starts_from_a_reserved_balance(org_a):
    _refused(
        "credit_chain_reserved_starts_at_zero",
        kind="grant",
        amount=5,
        reserved_change=0,
        audit_id=None,
        previous_reserved=3,
    )


def test_database_refuses_a_second_reservation_or_release_for_an_audit(org_a):
    audit = uuid.uuid4()
    _grant(100)
    _reserve(audit, 20)
    _refused("credit_one_reservation_per_audit", audit_id=audit)
    _release(audit, 5)
    _refused("credit_one_release_per_audit", kind="release", amount=5, reserved_change=-5, audit_id=audit)
    assert audit_credits(audit) == {"reserved": 20, "charged": 0, "released": 5}


def test_database_refuses_a_reserved_balance_that_is_not_the_ledgers(org_a):
    _grant(10)
    _reserve(uuid.uuid4(), 4)
    with pytest.raises(IntegrityError, match="credit_balance_last_row_reserved_fk"):
        _raw("UPDATE billing_creditbalance SET reserved = reserved + 1")
    with pytest.raises(IntegrityError, match="credit_reserved_not_negative"):
        _raw("UPDATE billing_creditbalance SET reserved = -1")
    # Credits cannot move between the two balances without a ledger row either.
    with pytest.raises(IntegrityError):
        _raw("UPDATE billing_creditbalance SET reserved = 0, balance = 10")
    assert credits_balances() == (6, 4)


def test_database_refuses_editing_or_deleting_a_reservation_row(org_a):
    audit = uuid.uuid4()
    _grant(10)
    _reserve(audit, 4)
    _charge(audit, 1)
    for statement in (
        "UPDATE billing_credittransaction SET reserved_change = 0, reserved_after = 0 "
        "WHERE kind = 'reservation'",
        "UPDATE billing_credittransaction SET audit_id = gen_random_uuid() WHERE kind = 'audit_charge'",
        "UPDATE billing_credittransaction SET reserved_after = reserved_after",
        "DELETE FROM billing_credittransaction WHERE kind = 'audit_charge'",
    ):
        with pytest.raises(IntegrityError, match="cannot be changed or removed"):
            _raw(statement)
    assert audit_credits(audit) == {"reserved": 4, "charged": 1, "released": 0}


def test_rows_written_before_reservations_existed_reserve_nothing(org_a):
    """An INSERT that names none of the new columns (as every writer did before them) gets
    a row that reserves nothing; the migration gives existing rows the same values."""
    _grant(10)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_credittransaction (id, sequence, previous_sequence, kind, amount, "
            "previous_balance, balance_after, reference, actor_label, created_at) "
            "VALUES (gen_random_uuid(), 2, 1, 'grant', 7, 10, 17, '', 'x', now())"
        )
        cursor.execute("UPDATE billing_creditbalance SET last_sequence = 2, balance = 17")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    row = CreditTransaction.objects.get(sequence=2)
    assert (row.reserved_change, row.previous_reserved, row.reserved_after, row.audit_id) == (0, 0, 0, None)
    assert CreditTransaction.objects.aggregate(total=Sum("reserved_change"))["total"] == 0
