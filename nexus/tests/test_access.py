"""The access helper (nexus/access.py): a missing, malformed or foreign id is one NotFound,
worded per kind, and a malformed list filter is a 422 naming the parameter."""

from __future__ import annotations

import uuid

import pytest
from django_tenants.utils import tenant_context

from etl.models import DataSource, EtlRun, Record
from etl.selectors import record_get, run_get, source_get
from jobs.selectors import job_get
from nexus.access import InvalidId, access_by_id, filter_id, filter_ids, id_value
from nexus.api.errors import NotFound, ValidationFailed
from tenants.selectors import member_get, member_list
from webhooks.models import WebhookDelivery, WebhookNotice
from webhooks.selectors import delivery_get, endpoint_get, notice_get
from webhooks.services import webhook_endpoint_create, webhook_send_test

pytestmark = pytest.mark.django_db

NUL = "\x00"
SURROGATE = "\ud800"


def _source(name: str = "Feed") -> DataSource:
    return DataSource.objects.create(
        name=name,
        kind="csv",
        config={"url": "https://feed.example/a.csv"},
        field_mapping={"external_id": "id"},
    )


def _record(source: DataSource, pk: int | None = None) -> Record:
    return Record.objects.create(pk=pk, source=source, external_id=uuid.uuid4().hex, content_hash="0" * 40)


def _not_found_message(call) -> str:
    with pytest.raises(NotFound) as raised:
        call()
    assert raised.value.status_code == 404
    assert raised.value.code == "NOT_FOUND"
    return raised.value.message


# --- id_value: what can be a primary key ----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "raw", "expected"),
    [
        (
            DataSource,
            "6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10",
            uuid.UUID("6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10"),
        ),
        (DataSource, uuid.UUID(int=7), uuid.UUID(int=7)),
        (Record, "42", 42),
        (Record, 42, 42),
        (WebhookDelivery, "msg_abc", "msg_abc"),
    ],
)
def test_id_value_converts_to_the_primary_key_type(model, raw, expected):
    assert id_value(model, raw) == expected


@pytest.mark.parametrize(
    ("model", "raw"),
    [
        (DataSource, None),
        (DataSource, ""),
        (DataSource, "abc"),
        (DataSource, "42"),  # an int model's id is not a UUID
        (DataSource, "6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a1" + NUL),
        (DataSource, SURROGATE),
        (Record, "6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10"),  # a UUID is not a record id
        (Record, "1.5"),
        (Record, "4" + NUL),
        (Record, str(2**63)),  # beyond bigint
        (Record, True),
        (WebhookDelivery, "x" * 41),  # longer than the column
        (WebhookDelivery, "msg_" + NUL),
        (WebhookDelivery, "msg_" + SURROGATE),
    ],
)
def test_id_value_refuses_what_no_row_can_have(model, raw):
    with pytest.raises(InvalidId):
        id_value(model, raw)


# --- access_by_id: missing, malformed and foreign are one answer ----------------------------


def test_access_by_id_returns_the_object(world):
    with tenant_context(world.org_a):
        source = _source()
        record = _record(source)
        assert (
            access_by_id(DataSource.objects.all(), str(source.pk), not_found="No such data source.") == source
        )
        assert access_by_id(Record.objects.all(), str(record.pk), not_found="No such record.") == record
        assert access_by_id(Record.objects.all(), record.pk, not_found="No such record.") == record


@pytest.mark.parametrize("raw", ["abc", "", None, NUL, SURROGATE, "12", "6f1c3a52" + NUL])
def test_a_malformed_id_is_not_found_without_a_query(world, django_assert_num_queries, raw):
    with tenant_context(world.org_a), django_assert_num_queries(0):
        message = _not_found_message(
            lambda: access_by_id(DataSource.objects.all(), raw, not_found="No such data source.")
        )
    assert message == "No such data source."


def test_missing_malformed_and_foreign_ids_are_worded_alike(world):
    with tenant_context(world.org_b):
        foreign_source = _source("B's")
        foreign_record = _record(foreign_source, pk=10**12 + 7)  # far from any id A's sequence gives
    with tenant_context(world.org_a):
        _record(_source("A's"))
        for model, not_found, ids in [
            (DataSource, "No such data source.", [foreign_source.pk, uuid.uuid4(), "not-a-uuid", "1" + NUL]),
            (Record, "No such record.", [foreign_record.pk, 10**15, "abc", -1, "9" * 30, "7" + NUL]),
        ]:
            messages = {
                _not_found_message(
                    lambda raw=raw, model=model, not_found=not_found: access_by_id(
                        model.objects.all(), raw, not_found=not_found
                    )
                )
                for raw in ids
            }
            assert messages == {not_found}


def test_another_organisations_member_is_not_found(world):
    not_found = "No such member in this organisation."
    assert (
        access_by_id(member_list(org=world.org_a), world.member_a.pk, not_found=not_found) == world.member_a
    )
    for raw in (world.member_b.pk, str(world.admin_b.pk), uuid.uuid4(), "x", NUL):
        assert _not_found_message(lambda raw=raw: member_get(org=world.org_a, member_id=raw)) == not_found


# --- every *_get selector is built on it ----------------------------------------------------


def test_every_get_selector_answers_not_found_per_kind(world):
    with tenant_context(world.org_b):
        endpoint, _ = webhook_endpoint_create(url="http://127.0.0.1:9/b", event_types=["job.completed"])
        foreign = {
            "delivery": webhook_send_test(endpoint=endpoint).pk,
            "notice": WebhookNotice.objects.create(endpoint=endpoint, kind="failing", message="down").pk,
            "endpoint": endpoint.pk,
            "run": EtlRun.objects.create(source=_source(), trigger="manual").pk,
        }
    cases = [
        (lambda raw: source_get(source_id=raw), "No such data source.", uuid.uuid4()),
        (lambda raw: run_get(run_id=raw), "No such run.", foreign["run"]),
        (lambda raw: record_get(record_id=raw), "No such record.", 10**15),
        (lambda raw: job_get(job_id=raw), "No such job.", uuid.uuid4()),
        (lambda raw: endpoint_get(endpoint_id=raw), "No such webhook endpoint.", foreign["endpoint"]),
        (lambda raw: delivery_get(delivery_id=raw), "No such webhook delivery.", foreign["delivery"]),
        (lambda raw: notice_get(notice_id=raw), "No such notice.", foreign["notice"]),
    ]
    with tenant_context(world.org_a):
        for get, message, unknown in cases:
            for raw in (unknown, "not an id", "", NUL, "x" * 41):
                assert _not_found_message(lambda get=get, raw=raw: get(raw)) == message


# --- filters: a malformed id is a 422 naming the parameter ----------------------------------


def test_filter_id_absent_or_empty_is_no_filter():
    assert filter_id(DataSource, None, param="source", what="data source") is None
    assert filter_id(DataSource, "", param="source", what="data source") is None


def test_filter_id_converts_a_well_formed_id():
    raw = "6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10"
    assert filter_id(DataSource, raw, param="source", what="data source") == uuid.UUID(raw)


@pytest.mark.parametrize("raw", ["abc", "12", NUL, SURROGATE, " 6f1c3a52-7b1e-4d0a-9c55-0d3b8f6e2a10"])
def test_filter_id_refuses_a_malformed_id_naming_the_parameter(raw):
    with pytest.raises(ValidationFailed) as raised:
        filter_id(EtlRun, raw, param="a", what="run")
    assert raised.value.status_code == 422
    assert raised.value.code == "VALIDATION_ERROR"
    assert raised.value.message == "a must be a run id."
    assert raised.value.details == {"fields": {"a": ["Invalid id."]}}


def test_filter_ids_skips_blank_items_and_refuses_malformed_ones():
    first, second = uuid.uuid4(), uuid.uuid4()
    assert filter_ids(DataSource, [str(first), " ", "", str(second)], param="source", what="data source") == [
        first,
        second,
    ]
    with pytest.raises(ValidationFailed) as raised:
        filter_ids(DataSource, [str(first), "nope"], param="source", what="data source")
    assert raised.value.message == "source must be data source ids."
    assert raised.value.details == {"fields": {"source": ["Invalid id."]}}
