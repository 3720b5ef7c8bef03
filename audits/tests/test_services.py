"""Audits end to end at the service layer, on the local evaluator: created with their items
and reservation in one transaction, evaluated batch by batch with each batch's verdicts and
charge committed together, and settled exactly (reservation = charges + release)."""

from __future__ import annotations

import io
import re

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from audits import services
from audits.inputs import parse_x_archive
from audits.models import Audit, AuditItem, AuditStatus, ItemStatus
from audits.samples import x_archive_js
from billing.models import CreditTransaction
from billing.selectors import credits_balance
from billing.services import credits_grant
from nexus.api.errors import Conflict, PaymentRequired, ValidationFailed
from nexus.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quota(settings):
    # The shared quota is exercised in test_quota.py; here it never holds a batch back.
    settings.AUDIT_PROVIDER_RPM = 100_000
    settings.AUDIT_PROVIDER_TPM = 100_000_000
    settings.AUDIT_CONCURRENCY_INITIAL = 16
    settings.AUDIT_CONCURRENCY_MAX = 16
    settings.GEMINI_API_KEY = ""  # the local evaluator


def _items(n: int, **options):
    return parse_x_archive(
        io.BytesIO(x_archive_js(n, seed=3)), max_items=10_000, max_item_chars=10_000, **options
    )


def _create(org, user, n: int = 120, *, batch_size: int = 20, credits: int = 1000, **options):
    with tenant_context(org):
        if credits:
            credits_grant(amount=credits, reason="test", actor_label="operator:tests")
        return services.audit_create(
            user=user,
            input_kind="x_archive",
            input_name="tweets.js",
            items=_items(n, **options),
            options=services.audit_criteria_check(
                criteria="Anything a recruiter would frown at", keywords=["party"], batch_size=batch_size
            ),
        )


def _drain(broker, django_capture_on_commit_callbacks, *, limit: int = 1000) -> int:
    """Run the recorded messages as a worker does, in their schema, first in first out."""
    ran = 0
    while broker.messages and ran < limit:
        message = broker.messages.pop(0)
        with django_capture_on_commit_callbacks(execute=True):
            celery_app.tasks[message.task].apply(
                args=message.args, headers={"_schema_name": message.schema}, throw=True
            )
        connection.set_schema_to_public()
        ran += 1
    return ran


def _ledger(org, audit: Audit) -> dict[str, int]:
    with tenant_context(org):
        rows = CreditTransaction.objects.filter(audit_id=audit.pk)
        return {
            kind: sum(-row.reserved_change for row in rows if row.kind == kind)
            for kind in ("audit_charge", "release")
        } | {"reservation": sum(row.reserved_change for row in rows if row.kind == "reservation")}


def test_an_audit_is_created_with_its_items_and_its_reservation(
    world, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, 120, credits=500)
    assert (audit.status, audit.total, audit.credits_reserved) == ("queued", 120, 120)
    with tenant_context(world.org_a):
        assert AuditItem.objects.filter(audit=audit, status=ItemStatus.PENDING).count() == 120
        assert list(AuditItem.objects.filter(audit=audit).values_list("seq", flat=True)[:3]) == [1, 2, 3]
        assert credits_balance() == 500 - 120
    # The first batches are queued, at most AUDIT_MAX_IN_FLIGHT of them.
    assert [m.task for m in broker.messages] == ["audits.run_batch"] * 4


def test_a_short_balance_is_402_and_leaves_nothing(world, broker):
    with pytest.raises(PaymentRequired) as refused:
        _create(world.org_a, world.admin_a, 120, credits=50)
    assert refused.value.details["required"] == 120
    with tenant_context(world.org_a):
        assert not Audit.objects.exists()
        assert not AuditItem.objects.exists()
        assert credits_balance() == 50
    assert broker.messages == []


def test_a_bad_item_mid_stream_leaves_nothing(world, broker):
    tweets = x_archive_js(50, seed=3)
    # The 30th tweet's own id (19 digits; a mention's user id is shorter) made invalid.
    ids = [m.start(1) for m in re.finditer(rb'"id_str" : "(\d{19})"', tweets)]
    data = tweets[: ids[29]] + b"x" + tweets[ids[29] :]
    with tenant_context(world.org_a):
        credits_grant(amount=100, reason="test", actor_label="operator:tests")
        with pytest.raises(Exception, match="id"):
            services.audit_create(
                user=world.admin_a,
                input_kind="x_archive",
                input_name="tweets.js",
                items=parse_x_archive(io.BytesIO(data), max_items=1000, max_item_chars=1000),
                options=services.audit_criteria_check(criteria="anything"),
            )
        assert not Audit.objects.exists() and not AuditItem.objects.exists()
        assert credits_balance() == 100


def test_every_item_gets_one_verdict_and_the_ledger_settles_exactly(
    world, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, 130, batch_size=20, credits=1000)
    _drain(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        items = AuditItem.objects.filter(audit=audit)
        assert audit.status == AuditStatus.COMPLETED
        assert (
            items.filter(status=ItemStatus.EVALUATED).count() + items.filter(status=ItemStatus.FAILED).count()
            == 130
        )
        assert audit.done == 130
        assert audit.flagged == items.filter(flagged=True).count() > 0
        assert (
            audit.credits_charged == items.filter(status=ItemStatus.EVALUATED).count() * audit.price_per_item
        )
        assert audit.credits_reserved == audit.credits_charged + audit.credits_released
        assert credits_balance() == 1000 - audit.credits_charged
    ledger = _ledger(world.org_a, audit)
    assert ledger == {
        "reservation": 130,
        "audit_charge": audit.credits_charged,
        "release": audit.credits_released,
    }


def test_a_batch_that_dies_before_commit_leaves_its_items_pending_and_charges_nothing(
    world, broker, django_capture_on_commit_callbacks, monkeypatch
):
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, 40, batch_size=20, credits=100)
    original = services.evaluate_batch

    def dies(*args, **kwargs):
        raise RuntimeError("worker lost mid-call")

    monkeypatch.setattr(services, "evaluate_batch", dies)
    with pytest.raises(RuntimeError), tenant_context(world.org_a):
        services.audit_run_batch(audit_id=str(audit.pk))
    with tenant_context(world.org_a):
        assert AuditItem.objects.filter(audit=audit, status=ItemStatus.PENDING).count() == 40
        assert not CreditTransaction.objects.filter(audit_id=audit.pk, kind="audit_charge").exists()
    monkeypatch.setattr(services, "evaluate_batch", original)
    _drain(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        assert audit.status == AuditStatus.COMPLETED and audit.done == 40
        assert audit.credits_reserved == audit.credits_charged + audit.credits_released


def test_pause_stops_after_the_batch_and_resume_goes_on(world, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, 100, batch_size=10, credits=200)
    _drain(broker, django_capture_on_commit_callbacks, limit=2)
    with tenant_context(world.org_a):
        services.audit_pause(audit_id=audit.pk)
    _drain(broker, django_capture_on_commit_callbacks)  # the messages left find it paused
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        assert audit.status == AuditStatus.PAUSED and audit.done == 20
        with pytest.raises(Conflict):
            services.audit_pause(audit_id=audit.pk)
        with django_capture_on_commit_callbacks(execute=True):
            services.audit_resume(audit_id=audit.pk)
    _drain(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        assert audit.status == AuditStatus.COMPLETED and audit.done == 100


def test_cancel_releases_what_was_not_evaluated_at_once(world, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, 100, batch_size=10, credits=200)
    _drain(broker, django_capture_on_commit_callbacks, limit=3)
    with tenant_context(world.org_a):
        with django_capture_on_commit_callbacks(execute=True):
            services.audit_cancel(audit_id=audit.pk)
        audit.refresh_from_db()
        assert audit.status == AuditStatus.CANCELLED
        assert audit.cancelled_items == 70
        assert audit.credits_released == 100 - audit.credits_charged
        assert credits_balance() == 200 - audit.credits_charged
        with pytest.raises(Conflict):
            services.audit_resume(audit_id=audit.pk)
    _drain(broker, django_capture_on_commit_callbacks)  # late messages change nothing
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        assert audit.done == 30 and audit.credits_reserved == audit.credits_charged + audit.credits_released


def test_audits_of_two_organisations_take_turns(world, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        big = _create(world.org_a, world.admin_a, 400, batch_size=10, credits=1000)
        small = _create(world.org_b, world.admin_b, 20, batch_size=10, credits=100)
    # Each message runs one batch and queues the next at the back: the small audit's two
    # batches run within the first rounds, long before the big one ends.
    _drain(broker, django_capture_on_commit_callbacks, limit=8)
    with tenant_context(world.org_b):
        small.refresh_from_db()
        assert small.status == AuditStatus.COMPLETED
    with tenant_context(world.org_a):
        big.refresh_from_db()
        assert big.status == AuditStatus.RUNNING and big.done < 100


def test_criteria_and_options_are_checked(settings):
    with pytest.raises(ValidationFailed):
        services.audit_criteria_check(criteria="  ")
    with pytest.raises(ValidationFailed):
        services.audit_criteria_check(criteria="x" * 2001)
    with pytest.raises(ValidationFailed):
        services.audit_criteria_check(criteria="ok", batch_size=101)
    with pytest.raises(ValidationFailed):
        services.audit_criteria_check(criteria="ok", model="not-a-model")
    with pytest.raises(ValidationFailed):
        services.audit_criteria_check(criteria="ok", keywords=[f"k{i}" for i in range(51)])
    checked = services.audit_criteria_check(criteria=" ok ", keywords=["Party", "party", " "])
    assert checked["criteria"] == "ok" and checked["keywords"] == ["Party"]
    assert checked["categories"] == list(services.DEFAULT_CATEGORIES)


def test_items_put_back_after_a_cancel_are_cancelled_and_released(
    world, broker, django_capture_on_commit_callbacks
):
    """A batch that settled part of its items and had to wait for the quota puts the rest
    back as pending; if the audit was cancelled meanwhile, its next message settles them."""
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, 30, batch_size=10, credits=100)
    with tenant_context(world.org_a):
        # Cancelled while a batch held 5 items, which it then put back as pending.
        AuditItem.objects.filter(audit=audit, seq__gt=5).update(status=ItemStatus.CANCELLED)
        Audit.objects.filter(pk=audit.pk).update(status=AuditStatus.CANCELLED, cancelled_items=25)
    _drain(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        assert not AuditItem.objects.filter(audit=audit, status=ItemStatus.PENDING).exists()
        assert (audit.cancelled_items, audit.credits_released, audit.credits_charged) == (30, 30, 0)
        assert credits_balance() == 100
