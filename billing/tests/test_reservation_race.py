"""Writers of one organisation's reserved credits racing each other, on committed data with
separate connections: the balance row's lock makes them queue, so exactly one of two
claims on the same credits wins and the loser is refused with nothing written."""

import threading
import time
import uuid

from django.db import connections, transaction
from django_tenants.utils import tenant_context

from billing.models import CreditTransaction, TransactionKind
from billing.selectors import audit_credits, credits_balances, credits_ledger_reserved_sum, credits_ledger_sum
from billing.services import (
    InsufficientCredits,
    credits_charge_reserved,
    credits_deduct,
    credits_release,
    credits_reserve,
)
from nexus.api.errors import AppError, Conflict

# How long each transaction stays open after its write: the other racer reaches the lock
# while it is held, rather than after the commit.
HOLD_SECONDS = 0.3


def _race(org, *calls):
    """Run each call in its own thread, connection and transaction, released at the same
    moment; returns each call's result or the application error it raised."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            with tenant_context(org), transaction.atomic():
                outcomes[index] = call()
                time.sleep(HOLD_SECONDS)
        except AppError as exc:
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def _winner_and_loser(outcomes, error):
    wins = [o for o in outcomes if isinstance(o, CreditTransaction)]
    losses = [o for o in outcomes if isinstance(o, error)]
    assert (len(wins), len(losses)) == (1, 1), outcomes
    return wins[0], losses[0]


def _assert_balances_are_the_ledgers(org, expected):
    with tenant_context(org):
        assert credits_balances() == expected == (credits_ledger_sum(), credits_ledger_reserved_sum())


def test_two_reservations_racing_for_a_balance_that_fits_one_exactly_one_wins(live_org):
    live_org.grant(100)
    rounds = 5
    for _ in range(rounds):
        audits = [uuid.uuid4(), uuid.uuid4()]
        outcomes = _race(
            live_org,
            *(
                lambda audit=audit: credits_reserve(audit_id=audit, amount=60, actor_label="user:racer")
                for audit in audits
            ),
        )
        won, lost = _winner_and_loser(outcomes, InsufficientCredits)
        assert lost.details == {"balance": 40, "required": 60}
        _assert_balances_are_the_ledgers(live_org, (40, 60))
        with tenant_context(live_org):
            loser = next(a for a in audits if a != won.audit_id)
            assert not CreditTransaction.objects.filter(audit_id=loser).exists()
            # The winning audit ends without evaluating anything: the next round starts
            # from 100 available again.
            credits_release(audit_id=won.audit_id, amount=60, actor_label="audit:tests", reason="done")
    with tenant_context(live_org):
        assert CreditTransaction.objects.filter(kind=TransactionKind.RESERVATION).count() == rounds
    _assert_balances_are_the_ledgers(live_org, (100, 0))


def test_charges_releases_and_deductions_racing_never_take_more_than_there_is(live_org):
    live_org.grant(100)
    audit = uuid.uuid4()
    with tenant_context(live_org):
        credits_reserve(audit_id=audit, amount=10, actor_label="user:racer")

    # Two batches of one audit for its last credits: one is charged.
    def charge():
        return credits_charge_reserved(audit_id=audit, amount=6, actor_label="audit:racer")

    _, lost = _winner_and_loser(_race(live_org, charge, charge), Conflict)
    assert lost.details == {"reserved": 4, "required": 6}
    _assert_balances_are_the_ledgers(live_org, (90, 4))

    # Two endings of one audit: one release.
    def release():
        return credits_release(audit_id=audit, amount=4, actor_label="audit:racer", reason="ended")

    _, lost = _winner_and_loser(_race(live_org, release, release), Conflict)
    assert "already been released" in lost.message
    _assert_balances_are_the_ledgers(live_org, (94, 0))
    with tenant_context(live_org):
        assert audit_credits(audit) == {"reserved": 10, "charged": 6, "released": 4}

    # A job and an audit for the same available credits: one of them gets them.
    def deduct():
        return credits_deduct(job_id=uuid.uuid4(), amount=60, actor_label="user:racer")

    def reserve():
        return credits_reserve(audit_id=uuid.uuid4(), amount=60, actor_label="user:racer")

    won, lost = _winner_and_loser(_race(live_org, deduct, reserve), InsufficientCredits)
    assert lost.details == {"balance": 34, "required": 60}
    reserved = 60 if won.kind == TransactionKind.RESERVATION else 0
    _assert_balances_are_the_ledgers(live_org, (34, reserved))
