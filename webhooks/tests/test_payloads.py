"""Webhook payloads are a contract of their own: each event's JSON Schema is held by a
committed snapshot, every builder's output and every example validates against its schema,
the bodies are exactly the ones receivers have always had, and the webhooks app builds
them without importing the apps that publish (nor any API serializer).

Snapshots: after a deliberate change to a schema (and its version), rewrite them with
`UPDATE_WEBHOOK_SNAPSHOTS=1 pytest webhooks/tests/test_payloads.py` and commit the diff.
"""

from __future__ import annotations

import ast
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django_tenants.utils import tenant_context
from jsonschema import Draft202012Validator, FormatChecker

from billing.models import Purchase
from billing.services import credits_grant
from billing.services.purchases import purchase_fulfil
from jobs import services as job_services
from jobs import tasks as job_tasks
from jobs.models import Job
from webhooks import payloads, services
from webhooks.events import EVENT_TYPES, SUBSCRIBABLE_EVENTS, event_type_get
from webhooks.models import WebhookDelivery

SNAPSHOTS = Path(__file__).parent / "snapshots"
WEBHOOKS_APP = Path(__file__).resolve().parents[1]


def _format_checker() -> FormatChecker:
    """jsonschema checks `uuid` itself; `date-time` needs a package we do not install, so
    it is checked here with the standard library (a full date, a time and an offset)."""
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def is_date_time(value) -> bool:
        if not isinstance(value, str):
            return True
        parsed = datetime.fromisoformat(value)
        return "T" in value and parsed.tzinfo is not None

    return checker


def _validator(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(EVENT_TYPES[event_type].schema, format_checker=_format_checker())


def _errors(event_type: str, body: dict) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in _validator(event_type).iter_errors(body)]


# --- The catalogue ---------------------------------------------------------------------------


def test_the_catalogue_lists_every_event_in_its_order():
    assert list(EVENT_TYPES) == [
        "job.completed",
        "job.failed",
        "credits.purchased",
        "audit.completed",
        "audit.failed",
        "webhook.test",
    ]
    assert list(SUBSCRIBABLE_EVENTS) == [
        "job.completed",
        "job.failed",
        "credits.purchased",
        "audit.completed",
        "audit.failed",
    ]
    for name, event in EVENT_TYPES.items():
        assert event.name == name
        assert event.description
        assert event.version == 1


def test_an_unregistered_event_type_is_a_programming_error():
    assert event_type_get("job.completed") is EVENT_TYPES["job.completed"]
    with pytest.raises(ValueError, match=r"job\.exploded"):
        event_type_get("job.exploded")


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_schema_matches_its_committed_snapshot(event_type):
    schema = EVENT_TYPES[event_type].schema
    path = SNAPSHOTS / f"{event_type}.json"
    if os.environ.get("UPDATE_WEBHOOK_SNAPSHOTS"):
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"No snapshot of {event_type}'s schema: run with UPDATE_WEBHOOK_SNAPSHOTS=1."
    assert json.loads(path.read_text()) == schema, (
        f"The schema of {event_type} changed: what receivers get changes with it. If that is "
        "intended, raise the event's version and rewrite the snapshot (UPDATE_WEBHOOK_SNAPSHOTS=1)."
    )


def test_every_snapshot_belongs_to_an_event():
    assert sorted(p.stem for p in SNAPSHOTS.glob("*.json")) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_schema_is_valid_json_schema_and_names_its_version(event_type):
    event = EVENT_TYPES[event_type]
    Draft202012Validator.check_schema(event.schema)
    assert event.schema["title"] == f"{event.name}, version {event.version}"
    assert event.schema["properties"]["type"] == {"const": event.name}


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_example_validates_against_its_schema(event_type):
    example = EVENT_TYPES[event_type].example
    assert _errors(event_type, example) == []
    assert example["type"] == event_type


def test_schemas_refuse_a_body_with_a_key_missing_or_added():
    example = EVENT_TYPES["job.completed"].example
    missing = {**example, "data": {k: v for k, v in example["data"].items() if k != "cost"}}
    added = {**example, "data": {**example["data"], "input": {"text": "secret"}}}
    wrong_status = {**example, "data": {**example["data"], "status": "failed"}}
    assert any("'cost' is a required property" in e for e in _errors("job.completed", missing))
    assert any("'input' was unexpected" in e for e in _errors("job.completed", added))
    assert _errors("job.completed", wrong_status)
    assert _errors("job.completed", {**example, "timestamp": "yesterday"})


# --- Builders: exactly the bodies receivers have always had ------------------------------------

CREATED = datetime(2026, 3, 2, 9, 15, 1, 204918, tzinfo=UTC)
# A datetime in another zone is sent in UTC, as it always was (TIME_ZONE is UTC).
STARTED = datetime(2026, 3, 2, 10, 15, 1, 377120, tzinfo=ZoneInfo("Europe/Paris"))
FINISHED = datetime(2026, 3, 2, 9, 15, 4, 498201, tzinfo=UTC)


def test_job_builder_gives_the_job_body_key_for_key():
    job_id = uuid.UUID("5f0c8a52-3a3e-4a8e-9d43-5d2b7f3c9e10")
    job = SimpleNamespace(
        id=job_id,
        job_type="summarize",
        status="completed",
        cost=10,
        attempt_count=1,
        max_attempts=3,
        output={"summary": "Short."},
        error_message="",
        provider="local",
        model="extractive-v1",
        cache_hit=False,
        created_at=CREATED,
        started_at=STARTED,
        completed_at=FINISHED,
        failed_at=None,
        input={"text": "never sent"},
    )
    data = payloads.job_data(job)
    assert json.dumps(data) == json.dumps(
        {
            "id": "5f0c8a52-3a3e-4a8e-9d43-5d2b7f3c9e10",
            "job_type": "summarize",
            "status": "completed",
            "cost": 10,
            "attempt_count": 1,
            "max_attempts": 3,
            "output": {"summary": "Short."},
            "error": "",
            "provider": "local",
            "model": "extractive-v1",
            "cache_hit": False,
            "created_at": "2026-03-02T09:15:01.204918Z",
            "started_at": "2026-03-02T09:15:01.377120Z",
            "completed_at": "2026-03-02T09:15:04.498201Z",
            "failed_at": None,
        }
    )


def test_purchase_builder_gives_the_purchase_body_key_for_key():
    purchase = SimpleNamespace(
        id=uuid.UUID("0e6b3f1d-8c2a-4d5e-9f70-6a1b2c3d4e5f"),
        pack_id=uuid.UUID("c4a2e9b8-1d3f-4e6a-8b7c-9d0e1f2a3b4c"),
        pack_name="Starter",
        credits=100,
        amount_cents=1000,
        currency="usd",
        status="completed",
        checkout_url="https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
        credits_reversed=0,
        refund_shortfall=0,
        created_at=CREATED,
        completed_at=FINISHED,
        expired_at=None,
        refunded_at=None,
        stripe_session_id="cs_test_never_sent",
    )
    assert json.dumps(payloads.purchase_data(purchase)) == json.dumps(
        {
            "id": "0e6b3f1d-8c2a-4d5e-9f70-6a1b2c3d4e5f",
            "pack_id": "c4a2e9b8-1d3f-4e6a-8b7c-9d0e1f2a3b4c",
            "pack_name": "Starter",
            "credits": 100,
            "amount_cents": 1000,
            "currency": "usd",
            "status": "completed",
            "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
            "credits_reversed": 0,
            "refund_shortfall": 0,
            "created_at": "2026-03-02T09:15:01.204918Z",
            "completed_at": "2026-03-02T09:15:04.498201Z",
            "expired_at": None,
            "refunded_at": None,
        }
    )


def test_audit_builder_gives_the_audit_body_key_for_key():
    audit = SimpleNamespace(
        id=uuid.UUID("3c9e7a10-5b2d-4f8e-a1c6-7d4b9e2f0a83"),
        status="completed",
        input_kind="x_archive",
        total=120,
        done=120,
        flagged=7,
        failed=2,
        cancelled_items=0,
        credits_reserved=120,
        credits_charged=118,
        credits_released=2,
        error="",
        finished_at=STARTED,
        criteria="never sent",
        keywords=["never", "sent"],
    )
    assert json.dumps(payloads.audit_data(audit)) == json.dumps(
        {
            "id": "3c9e7a10-5b2d-4f8e-a1c6-7d4b9e2f0a83",
            "status": "completed",
            "input_kind": "x_archive",
            "total": 120,
            "done": 120,
            "flagged": 7,
            "failed": 2,
            "cancelled_items": 0,
            "credits_reserved": 120,
            "credits_charged": 118,
            "credits_released": 2,
            "error": "",
            "finished_at": "2026-03-02T09:15:01.377120Z",
        }
    )


def test_test_event_builder_names_the_endpoint():
    endpoint = SimpleNamespace(pk=uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"))
    assert payloads.webhook_test_data(endpoint) == {
        "endpoint_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "message": "This is a test event from NexusAPI.",
    }


def test_body_wraps_data_with_its_type_and_publishing_time():
    before = datetime.now(UTC)
    body = payloads.body(event_type="job.failed", data={"id": "x"})
    assert list(body) == ["type", "timestamp", "data"]
    assert body["type"] == "job.failed"
    assert body["data"] == {"id": "x"}
    assert before <= datetime.fromisoformat(body["timestamp"]) <= datetime.now(UTC)


# --- Builders on real objects, published through the outbox -------------------------------------


@pytest.fixture
def org(world, broker):
    """Organisation A with credits and an endpoint subscribed to everything; tasks handed
    to the broker are only recorded (the outbox rows are what these tests read)."""
    with tenant_context(world.org_a):
        credits_grant(amount=500, reason="seed", actor_label="operator:tests")
        endpoint, _secret = services.webhook_endpoint_create(
            url="http://127.0.0.1:9/hook", event_types=list(SUBSCRIBABLE_EVENTS)
        )
        world.endpoint = endpoint
        yield world


TEXT = "Revenue rose twelve percent this quarter. Churn fell. The team is pleased. Hiring resumes."


def _completed_jobs(org, capture):
    """A summary and an analysis run by the local provider, and one answered from the cache."""
    jobs = []
    for job_type in ("summarize", "analyze"):
        job = job_services.job_create(user=org.member_a, job_type=job_type, text=TEXT)
        with capture(execute=True):  # the result reaches the cache on commit
            job_tasks.run_job(str(job.pk))
        jobs.append(Job.objects.get(pk=job.pk))
    cached = job_services.job_create(user=org.member_a, job_type="summarize", text=TEXT)
    assert cached.cache_hit
    return [*jobs, cached]


def _failed_job(org):
    job = job_services.job_create(user=org.member_a, job_type="analyze", text=TEXT, provider="always-fails")
    for _ in range(settings.JOB_MAX_ATTEMPTS):
        job_tasks.run_job(str(job.pk))
    return Job.objects.get(pk=job.pk)


def _purchase(org):
    purchase = Purchase.objects.create(
        pack_id=uuid.uuid4(),
        pack_name="Starter",
        credits=100,
        amount_cents=1000,
        currency="usd",
        checkout_url="https://checkout.stripe.com/c/pay/cs_test_1",
        created_by_id=org.admin_a.pk,
    )
    assert purchase_fulfil(purchase_id=purchase.pk, payment_intent_id="pi_test_1") is not None
    return Purchase.objects.get(pk=purchase.pk)


@pytest.mark.django_db
def test_job_bodies_of_real_jobs_validate_and_are_what_was_published(org, django_capture_on_commit_callbacks):
    jobs = _completed_jobs(org, django_capture_on_commit_callbacks)
    failed = _failed_job(org)
    published = {d.payload["data"]["id"]: d for d in WebhookDelivery.objects.all()}
    assert set(published) == {str(job.pk) for job in [*jobs, failed]}
    for job in [*jobs, failed]:
        event_type = "job.failed" if job is failed else "job.completed"
        delivery = published[str(job.pk)]
        assert delivery.event_type == event_type
        body = payloads.body(event_type=event_type, data=EVENT_TYPES[event_type].build(job))
        assert _errors(event_type, body) == []
        assert _errors(event_type, delivery.payload) == []
        assert delivery.payload["data"] == body["data"]
        assert "input" not in delivery.payload["data"]


@pytest.mark.django_db
def test_purchase_body_of_a_real_purchase_validates_and_is_what_was_published(org):
    purchase = _purchase(org)
    (delivery,) = WebhookDelivery.objects.filter(event_type="credits.purchased")
    body = payloads.body(event_type="credits.purchased", data=payloads.purchase_data(purchase))
    assert _errors("credits.purchased", body) == []
    assert _errors("credits.purchased", delivery.payload) == []
    assert delivery.payload["data"] == body["data"]
    assert body["data"]["id"] == str(purchase.pk)


@pytest.mark.django_db
def test_test_event_body_validates_and_is_what_was_sent(org):
    delivery = services.webhook_send_test(endpoint=org.endpoint)
    delivery.refresh_from_db()
    assert _errors("webhook.test", delivery.payload) == []
    assert delivery.payload["data"] == payloads.webhook_test_data(org.endpoint)


# --- Publishing through the catalogue ------------------------------------------------------------


@pytest.mark.django_db
def test_publishing_a_subject_sends_its_builders_body(org):
    job = SimpleNamespace(**payloads.JOB_FAILED_EXAMPLE["data"])
    job.error_message = job.error
    for field in ("created_at", "started_at", "failed_at"):
        setattr(job, field, datetime.fromisoformat(getattr(job, field)))
    (delivery,) = services.webhook_publish(event_type="job.failed", subject=job)
    delivery.refresh_from_db()
    assert delivery.payload["data"] == payloads.JOB_FAILED_EXAMPLE["data"]
    assert delivery.payload["type"] == "job.failed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"subject": object(), "data": {}},
        {"subject": None, "data": {"id": "x"}},
    ],
)
def test_publishing_needs_exactly_one_of_subject_and_data(org, kwargs):
    with pytest.raises(ValueError, match="exactly one"):
        services.webhook_publish(event_type="job.completed", **kwargs)
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_the_test_event_is_not_published_to_subscribers(org):
    with pytest.raises(ValueError, match="only on request"):
        services.webhook_publish(event_type="webhook.test", subject=org.endpoint)
    assert not WebhookDelivery.objects.exists()


# --- The dependency direction -------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_webhooks_app_imports_no_app_that_publishes_and_no_api_serializer():
    publishers = {"jobs", "billing", "etl", "audits"}
    offenders = {}
    for path in WEBHOOKS_APP.rglob("*.py"):
        if "tests" in path.relative_to(WEBHOOKS_APP).parts:
            continue
        bad = {
            name
            for name in _imports(path)
            if name.split(".")[0] in publishers
            or (name.endswith("serializers") and not name.startswith("webhooks."))
        }
        if bad:
            offenders[str(path.relative_to(WEBHOOKS_APP))] = sorted(bad)
    assert offenders == {}


def test_application_code_publishes_subjects_not_prebuilt_data():
    root = WEBHOOKS_APP.parent
    calls = []
    for app in ("jobs", "billing", "etl", "audits", "tenants", "webhooks"):
        for path in (root / app).rglob("*.py"):
            if "tests" in path.relative_to(root / app).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) == "webhook_publish"
                ):
                    calls.append((str(path.relative_to(root)), sorted(k.arg for k in node.keywords)))
    assert sorted(calls) == [
        ("audits/services.py", ["event_type", "subject"]),
        ("billing/services/purchases.py", ["event_type", "subject"]),
        ("jobs/services.py", ["event_type", "subject"]),
    ]
