"""A real worker SIGKILLed in the middle of an audit, against the Gemini stand-in, and a
second worker finishing it: every item has exactly one verdict, none was skipped, the items
the provider was asked about twice are only those of the batches in flight at the kill, and
the ledger holds exactly the charges for the evaluated items plus one release. The test
process plays beat: it runs the audits sweep, which re-sends the messages the kill lost."""

from __future__ import annotations

import io
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from audits import services
from audits.inputs import parse_x_archive
from audits.models import Audit, AuditItem, AuditStatus, ItemStatus
from audits.samples import x_archive_js
from billing.models import CreditTransaction
from billing.selectors import credits_balance
from nexus.tests.live import WorkerProcess

ITEMS = 400
BATCH = 20
LATENCY = 0.15  # seconds per provider call: the audit takes a few seconds, long enough to kill


@pytest.fixture
def gemini_audits(gemini_stub, settings):
    gemini_stub.reset_audits()
    gemini_stub.audit_latency = LATENCY
    settings.GEMINI_API_KEY = "test-key"  # the audit records the provider chosen at creation
    settings.GEMINI_BASE_URL = gemini_stub.url
    yield gemini_stub
    gemini_stub.reset_audits()


def _audit(org, audit_id) -> Audit:
    with tenant_context(org):
        return Audit.objects.get(pk=audit_id)


def _wait(org, audit_id, done, *, timeout: float, sweep: bool = False) -> Audit:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sweep:
            with tenant_context(org):
                # Beat's sweep, as if two minutes had passed without a batch.
                Audit.objects.filter(pk=audit_id).update(last_batch_at=timezone.now() - timedelta(minutes=5))
                services.audits_sweep()
        audit = _audit(org, audit_id)
        if done(audit):
            return audit
        time.sleep(0.2)
    raise AssertionError(
        f"audit {audit_id} still {audit.status}, {audit.done}/{audit.total}, after {timeout} s"
    )


def test_an_audit_whose_worker_is_killed_finishes_with_exact_items_and_ledger(live_org, gemini_audits):
    live_org.grant(ITEMS + 50)
    env = {
        "GEMINI_API_KEY": "test-key",
        "GEMINI_BASE_URL": gemini_audits.url,
        "AUDIT_PROVIDER_RPM": "100000",
        "AUDIT_PROVIDER_TPM": "100000000",
        "AUDIT_CONCURRENCY_INITIAL": "8",
        "AUDIT_CONCURRENCY_MAX": "8",
    }
    worker = WorkerProcess(env, queues=("audits",), name="audits-kill", pool="prefork", concurrency=2)
    worker.start()
    try:
        with tenant_context(live_org):
            audit = services.audit_create(
                user=live_org.admin,
                input_kind="x_archive",
                input_name="tweets.js",
                items=parse_x_archive(
                    io.BytesIO(x_archive_js(ITEMS, seed=11)), max_items=10_000, max_item_chars=10_000
                ),
                options=services.audit_criteria_check(criteria="Anything unprofessional", batch_size=BATCH),
            )
        assert audit.provider == "gemini"
        _wait(live_org, audit.pk, lambda a: a.done >= 4 * BATCH, timeout=60)
        worker.kill()  # SIGKILL with batches in flight: their claims roll back
        killed = _audit(live_org, audit.pk)
        assert killed.status == AuditStatus.RUNNING and killed.done < ITEMS

        worker.start()
        done = _wait(live_org, audit.pk, lambda a: a.status == AuditStatus.COMPLETED, timeout=120, sweep=True)
    finally:
        worker.stop()

    with tenant_context(live_org):
        items = AuditItem.objects.filter(audit=done)
        evaluated = items.filter(status=ItemStatus.EVALUATED).count()
        assert items.count() == ITEMS
        assert evaluated + items.filter(status=ItemStatus.FAILED).count() == ITEMS  # none skipped
        assert not items.filter(status=ItemStatus.PENDING).exists()
        assert done.done == ITEMS

        charges = CreditTransaction.objects.filter(audit_id=done.pk, kind="audit_charge")
        assert (
            -sum(row.reserved_change for row in charges)
            == evaluated * done.price_per_item
            == done.credits_charged
        )
        assert CreditTransaction.objects.filter(audit_id=done.pk, kind="release").count() == (
            1 if done.credits_released else 0
        )
        assert done.credits_reserved == done.credits_charged + done.credits_released
        assert credits_balance() == ITEMS + 50 - done.credits_charged

    # Asked about twice: only items of the batches in flight when the worker died.
    asked = Counter(item_id for ids in gemini_audits.audit_ids() for item_id in ids)
    twice = [item_id for item_id, times in asked.items() if times > 1]
    assert len(twice) <= 2 * BATCH  # the prefork pool's two processes
    assert len(asked) == ITEMS  # and every item was asked about
    print(f"killed at {killed.done}/{ITEMS}; items asked twice: {len(twice)}")
