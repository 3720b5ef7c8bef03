"""What an audit tells the outside world: one webhook event when it ends (`audit.completed`,
`audit.failed`), written to the outbox in the transaction that ends it and never again,
whoever settles the audit later; and the Prometheus series that follow its items, batches,
the provider's 429s, the waits for the shared quota and the shared concurrency limit. The
provider is the local evaluator, or the Gemini stand-in where a 429 or a refusal is needed."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from audits import services
from audits.inputs import parse_csv, parse_x_archive
from audits.models import Audit, AuditItem, AuditStatus, ItemStatus
from audits.samples import x_archive_js
from billing.services import credits_grant
from nexus import metrics as nexus_metrics
from nexus.celery import app as celery_app
from nexus.redis import get_redis, redis_key
from nexus.tests.metric_values import Moved
from webhooks import payloads
from webhooks.events import EVENT_TYPES
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create

AUDIT_EVENTS = ["audit.completed", "audit.failed"]
TOKEN = "scrape-token"


@pytest.fixture(autouse=True)
def _quota(settings):
    # The quota never holds a batch back here unless a test asks the stand-in for a 429; the
    # shared state of the quotas these audits use starts afresh (the limit at its initial 16).
    settings.AUDIT_PROVIDER_RPM = 100_000
    settings.AUDIT_PROVIDER_TPM = 100_000_000
    settings.AUDIT_CONCURRENCY_INITIAL = 16
    settings.AUDIT_CONCURRENCY_MAX = 16
    settings.GEMINI_API_KEY = ""  # the local evaluator, unless a test points at the stand-in
    _forget_quotas()
    yield
    _forget_quotas()


def _forget_quotas() -> None:
    client = get_redis()
    for provider in ("local", "gemini"):
        for model in django_settings.AUDIT_MODELS:
            keys = list(client.scan_iter(match=redis_key("quota", f"{provider}:{model}") + ":*"))
            if keys:
                client.delete(*keys)


@pytest.fixture
def gemini(gemini_stub, settings):
    """Audits created from now on use Gemini, answered by the local stand-in."""
    gemini_stub.reset_audits()
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = gemini_stub.url
    yield gemini_stub
    gemini_stub.reset_audits()


def _subscribe(org) -> None:
    with tenant_context(org):
        webhook_endpoint_create(url="http://127.0.0.1:9/hook", event_types=AUDIT_EVENTS)


def _create(org, user, items, *, batch_size: int, kind: str = "x_archive", credits: int = 1000) -> Audit:
    with tenant_context(org):
        if credits:
            credits_grant(amount=credits, reason="test", actor_label="operator:tests")
        return services.audit_create(
            user=user,
            input_kind=kind,
            input_name="input",
            items=items,
            options=services.audit_criteria_check(
                criteria="Anything a recruiter would frown at", keywords=["party"], batch_size=batch_size
            ),
        )


def _tweets(n: int):
    return parse_x_archive(io.BytesIO(x_archive_js(n, seed=3)), max_items=10_000, max_item_chars=10_000)


def _rows(texts: list[str]):
    lines = "".join(f"{n},{text}\n" for n, text in enumerate(texts, start=1))
    return parse_csv(io.BytesIO(f"id,text\n{lines}".encode()), max_items=10_000, max_item_chars=10_000)


def _drain(broker, capture=None, *, limit: int = 1000) -> int:
    """Run the audits' recorded messages as their worker does, in their schema, first in first
    out (the webhook deliveries' messages stay recorded: the outbox rows are what is read)."""
    ran = 0
    while ran < limit:
        message = next((m for m in broker.messages if m.task.startswith("audits.")), None)
        if message is None:
            break
        broker.messages.remove(message)
        with capture(execute=True) if capture else contextlib.nullcontext():
            celery_app.tasks[message.task].apply(
                args=message.args, kwargs={}, headers={"_schema_name": message.schema}, throw=True
            )
        connection.set_schema_to_public()
        ran += 1
    return ran


def _deliveries(org, event_type: str | None = None) -> list[WebhookDelivery]:
    with tenant_context(org):
        rows = WebhookDelivery.objects.filter(event_type__startswith="audit.")
        return list(rows.filter(event_type=event_type) if event_type else rows)


def _schema_errors(payload: dict) -> list[str]:
    validator = Draft202012Validator(EVENT_TYPES[payload["type"]].schema)
    return [error.message for error in validator.iter_errors(payload)]


def _events(caplog, name: str) -> list[dict]:
    return [
        record.msg
        for record in caplog.records
        if record.name == "audits.services" and isinstance(record.msg, dict) and record.msg["event"] == name
    ]


# --- Webhook events ---------------------------------------------------------------------------


def test_an_audit_evaluated_to_the_end_publishes_one_audit_completed_with_its_counts(
    world, broker, django_capture_on_commit_callbacks
):
    _subscribe(world.org_a)
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, _tweets(130), batch_size=20)
    _drain(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    assert audit.status == AuditStatus.COMPLETED
    (delivery,) = _deliveries(world.org_a)
    assert delivery.event_type == "audit.completed"
    assert _schema_errors(delivery.payload) == []
    data = delivery.payload["data"]
    assert data == payloads.audit_data(audit)
    assert data["id"] == str(audit.pk)
    assert (data["status"], data["input_kind"], data["total"], data["done"]) == (
        "completed",
        "x_archive",
        130,
        130,
    )
    assert data["flagged"] == audit.flagged > 0
    assert data["credits_charged"] == (130 - data["failed"]) * audit.price_per_item
    assert data["credits_reserved"] == data["credits_charged"] + data["credits_released"] == 130
    assert (data["cancelled_items"], data["error"]) == (0, "")
    assert data["finished_at"] is not None
    # Its delivery was sent on commit, like every outbox row.
    assert [m.args[0] for m in broker.messages if m.task == "webhooks.deliver"] == [delivery.pk]


def test_the_sweep_and_late_messages_do_not_publish_an_ended_audit_again(
    world, broker, django_capture_on_commit_callbacks
):
    _subscribe(world.org_a)
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, _tweets(40), batch_size=20)
    _drain(broker, django_capture_on_commit_callbacks)
    assert len(_deliveries(world.org_a, "audit.completed")) == 1
    with tenant_context(world.org_a), django_capture_on_commit_callbacks(execute=True):
        # Beat's sweep, as if the audit had been quiet for long; then a late message.
        Audit.objects.filter(pk=audit.pk).update(last_batch_at=timezone.now() - timedelta(minutes=5))
        services.audits_sweep()
        assert services.audit_run_batch(audit_id=str(audit.pk)) == "idle"
    assert len(_deliveries(world.org_a)) == 1


def test_a_transaction_that_rolls_back_publishes_and_counts_nothing(
    world, broker, django_capture_on_commit_callbacks
):
    _subscribe(world.org_a)
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, _tweets(20), batch_size=20)
    broker.messages.clear()
    with Moved() as moved, tenant_context(world.org_a):
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(RuntimeError),
            transaction.atomic(),
        ):
            # The one batch: it evaluates every item and completes the audit...
            services.audit_run_batch(audit_id=str(audit.pk))
            assert Audit.objects.get(pk=audit.pk).status == AuditStatus.COMPLETED
            assert WebhookDelivery.objects.filter(event_type="audit.completed").count() == 1
            raise RuntimeError("the worker's connection broke before the commit")
        # ...and the rollback takes back the items' verdicts, the event and the counts.
        assert Audit.objects.get(pk=audit.pk).status == AuditStatus.QUEUED
        assert not WebhookDelivery.objects.exists()
    assert not [m for m in broker.messages if m.task == "webhooks.deliver"]
    for outcome in ("evaluated", "failed"):
        assert moved("nexus_audit_items_total", outcome=outcome) == 0
    for outcome in ("committed", "split"):
        assert moved("nexus_audit_batches_total", outcome=outcome) == 0


def test_an_audit_the_provider_refuses_publishes_audit_failed_once(
    world, broker, django_capture_on_commit_callbacks, gemini, settings
):
    """Gemini answers 403 for every batch (the key refused): each batch's items fail after
    one call, and the second such batch in a row fails the audit."""
    settings.AUDIT_FAIL_AFTER_BATCHES = 2
    _subscribe(world.org_a)
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, _rows(["[auth] hello"] * 10), batch_size=2, kind="csv")
    with Moved() as moved:
        _drain(broker, django_capture_on_commit_callbacks)
        with tenant_context(world.org_a), django_capture_on_commit_callbacks(execute=True):
            Audit.objects.filter(pk=audit.pk).update(last_batch_at=timezone.now() - timedelta(minutes=5))
            services.audits_sweep()
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    assert (audit.status, audit.done, audit.failed, audit.cancelled_items) == ("failed", 4, 4, 6)
    assert len(gemini.audit_ids(status=403)) == 2
    (delivery,) = _deliveries(world.org_a)
    assert delivery.event_type == "audit.failed"
    assert _schema_errors(delivery.payload) == []
    assert delivery.payload["data"] == payloads.audit_data(audit)
    assert delivery.payload["data"] | {"id": "-", "finished_at": "-"} == {
        "id": "-",
        "status": "failed",
        "input_kind": "csv",
        "total": 10,
        "done": 4,
        "flagged": 0,
        "failed": 4,
        "cancelled_items": 6,
        "credits_reserved": 10,
        "credits_charged": 0,
        "credits_released": 10,
        "error": audit.error,
        "finished_at": "-",
    }
    assert audit.error
    assert moved("nexus_audit_items_total", outcome="failed") == 4
    assert moved("nexus_audit_items_total", outcome="cancelled") == 6
    assert moved("nexus_audit_items_total", outcome="evaluated") == 0


def test_a_cancelled_audit_publishes_nothing_and_counts_its_cancelled_items(
    world, broker, django_capture_on_commit_callbacks
):
    _subscribe(world.org_a)
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, _tweets(100), batch_size=10)
    _drain(broker, django_capture_on_commit_callbacks, limit=3)
    with Moved() as moved:
        with tenant_context(world.org_a), django_capture_on_commit_callbacks(execute=True):
            services.audit_cancel(audit_id=audit.pk)
        _drain(broker, django_capture_on_commit_callbacks)
    assert moved("nexus_audit_items_total", outcome="cancelled") == 70
    assert _deliveries(world.org_a) == []


def _hold_items(org, item_ids: list[int], held: threading.Event, release: threading.Event) -> None:
    """A worker in the middle of a batch: its claim on the items, held until `release`, then
    lost (the worker dies: the claim rolls back and the items are pending again)."""
    try:
        with tenant_context(org), transaction.atomic():
            # As a batch claims (ordered by seq: the model's default order would lock the audit too).
            list(AuditItem.objects.select_for_update().filter(pk__in=item_ids).order_by("seq"))
            held.set()
            release.wait(30)
            transaction.set_rollback(True)
    finally:
        connection.close()


def test_a_batch_in_flight_when_the_audit_fails_is_settled_later_without_a_second_event(
    live_org, broker, gemini, settings
):
    """The audit fails while a worker holds two of its items: they stay pending, so its
    release waits, while audit.failed is published at once. When that worker's claim is gone,
    the sweep cancels them and releases their credits, and publishes nothing."""
    settings.AUDIT_FAIL_AFTER_BATCHES = 2
    _subscribe(live_org)
    audit = _create(
        live_org, live_org.admin, _rows(["[auth] hello"] * 10), batch_size=2, kind="csv", credits=50
    )
    with tenant_context(live_org):
        in_flight = list(AuditItem.objects.filter(audit_id=audit.pk, seq__gt=8).values_list("pk", flat=True))
    held, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=_hold_items, args=(live_org, in_flight, held, release))
    worker.start()
    try:
        assert held.wait(10)
        _drain(broker)
        with tenant_context(live_org):
            audit.refresh_from_db()
            assert (audit.status, audit.cancelled_items, audit.credits_released) == ("failed", 4, 0)
            assert AuditItem.objects.filter(audit_id=audit.pk, status=ItemStatus.PENDING).count() == 2
    finally:
        release.set()
        worker.join(30)
    (delivery,) = _deliveries(live_org)
    assert delivery.event_type == "audit.failed"
    # What was known when it ended: the two items in flight were neither settled nor released.
    data = delivery.payload["data"]
    assert (data["done"], data["cancelled_items"], data["credits_released"]) == (4, 4, 0)

    with tenant_context(live_org):
        services.audits_sweep()
        audit.refresh_from_db()
    assert (audit.status, audit.cancelled_items, audit.credits_released) == ("failed", 6, 10)
    assert audit.credits_reserved == audit.credits_charged + audit.credits_released
    assert [d.pk for d in _deliveries(live_org)] == [delivery.pk]


# --- Metrics ----------------------------------------------------------------------------------


def test_the_items_and_batches_of_an_audit_are_counted_when_they_commit(
    world, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, _tweets(130), batch_size=20)
    with Moved() as moved:
        _drain(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    assert audit.status == AuditStatus.COMPLETED
    assert moved("nexus_audit_items_total", outcome="evaluated") == audit.done - audit.failed
    assert moved("nexus_audit_items_total", outcome="failed") == audit.failed
    assert moved("nexus_audit_items_total", outcome="cancelled") == 0
    # Seven batches of at most 20, each one provider call through the quota's guard.
    assert moved("nexus_audit_batches_total", outcome="committed") == 7
    assert moved("nexus_audit_batches_total", outcome="split") == 0
    assert moved("nexus_audit_batches_total", outcome="requeued") == 0
    assert moved("nexus_audit_quota_wait_seconds_count") == 7
    assert moved("nexus_audit_provider_throttled_total") == 0


def test_a_batch_the_provider_answers_with_malformed_verdicts_is_counted_split(
    world, broker, django_capture_on_commit_callbacks, gemini
):
    texts = ["fine", "[malformed] spoiled", "fine too", "also fine"]
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(world.org_a, world.admin_a, _rows(texts), batch_size=4, kind="csv")
    with Moved() as moved:
        _drain(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    assert (audit.status, audit.failed) == ("completed", 1)
    assert moved("nexus_audit_batches_total", outcome="split") == 1
    assert moved("nexus_audit_batches_total", outcome="committed") == 0
    assert moved("nexus_audit_items_total", outcome="evaluated") == 3
    assert moved("nexus_audit_items_total", outcome="failed") == 1


def _scrape(client, settings, monkeypatch) -> dict[tuple[str, tuple], float]:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_LIVE_CACHE_SECONDS = 0
    monkeypatch.setattr(nexus_metrics, "_snapshot", None)
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def _limit(values, model: str) -> float | None:
    return values.get(("nexus_audit_concurrency_limit", (("model", model), ("provider", "gemini"))))


def test_a_429_is_counted_halves_the_scraped_limit_and_the_wait_for_its_pause_is_measured(
    world, broker, django_capture_on_commit_callbacks, gemini, client, settings, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="audits.services")
    model = settings.AUDIT_MODELS[0]
    assert _limit(_scrape(client, settings, monkeypatch), model) == 16
    _subscribe(world.org_a)
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(
            world.org_a, world.admin_a, _rows(["one", "two", "three", "four"]), batch_size=4, kind="csv"
        )
    gemini.throttle_audits(1, retry_after=0.5, header=False, details=True)
    with Moved() as moved:
        _drain(broker, django_capture_on_commit_callbacks, limit=1)  # the 429: sent back
        assert _limit(_scrape(client, settings, monkeypatch), model) == 8
        _drain(broker, django_capture_on_commit_callbacks)  # waits out the pause, then runs
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    assert audit.status == AuditStatus.COMPLETED
    assert [r.status for r in gemini.audit_requests] == [429, 200]
    assert moved("nexus_audit_provider_throttled_total") == 1
    assert moved("nexus_audit_batches_total", outcome="requeued") == 1
    assert moved("nexus_audit_batches_total", outcome="committed") == 1
    assert moved("nexus_audit_items_total", outcome="evaluated") == 4
    assert moved("nexus_audit_quota_wait_seconds_count") == 2
    assert 0 < moved("nexus_audit_quota_wait_seconds_sum") < 5  # the pause was waited out (not timed: noisy)
    (throttled,) = _events(caplog, "audit.provider_throttled")
    assert (throttled["audit_id"], throttled["retry_after"], throttled["delay_s"]) == (
        str(audit.pk),
        0.5,
        0.5,
    )
    assert _events(caplog, "audit.provider_unavailable") == []
    assert len(_deliveries(world.org_a, "audit.completed")) == 1


def test_a_provider_error_is_logged_as_unavailable_and_the_batch_requeued(
    world, broker, django_capture_on_commit_callbacks, gemini, caplog
):
    caplog.set_level(logging.INFO, logger="audits.services")
    with django_capture_on_commit_callbacks(execute=True):
        audit = _create(
            world.org_a, world.admin_a, _rows(["[server-error] one", "two"]), batch_size=2, kind="csv"
        )
    with Moved() as moved, tenant_context(world.org_a), pytest.raises(services.Requeue):
        services.audit_run_batch(audit_id=str(audit.pk))
    assert moved("nexus_audit_batches_total", outcome="requeued") == 1
    assert moved("nexus_audit_provider_throttled_total") == 0
    assert moved("nexus_audit_items_total", outcome="failed") == 0
    (unavailable,) = _events(caplog, "audit.provider_unavailable")
    assert unavailable["audit_id"] == str(audit.pk) and unavailable["error_class"]
    with tenant_context(world.org_a):
        assert AuditItem.objects.filter(audit_id=audit.pk, status=ItemStatus.PENDING).count() == 2


def test_no_audit_series_is_labelled_with_an_organisation(world, client, settings, monkeypatch):
    values = _scrape(client, settings, monkeypatch)
    audit_labels = {name: dict(labels) for name, labels in values if name.startswith("nexus_audit_")}
    assert {
        "nexus_audit_items_total",
        "nexus_audit_batches_total",
        "nexus_audit_provider_throttled_total",
        "nexus_audit_quota_wait_seconds_count",
        "nexus_audit_concurrency_limit",
    } <= set(audit_labels)
    label_names = {label for labels in audit_labels.values() for label in labels}
    assert label_names <= {"outcome", "provider", "model", "le"}
