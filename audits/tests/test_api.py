"""The audits API end to end, on the local evaluator: an audit started from an X archive (its
tweets.js or its zip), a CSV or the organisation's records, evaluated by draining the
recorded broker messages as a worker would, then read, paused, resumed, cancelled and
downloaded as CSV; and every failure the spec names, with its envelope."""

from __future__ import annotations

import csv
import io
import re
import uuid
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.utils import timezone
from django_tenants.utils import tenant_context

from audits import csv_export
from audits.models import Audit, AuditItem, ItemStatus
from audits.samples import sample_tweets, x_archive_js, x_archive_zip
from billing.models import CreditTransaction
from billing.selectors import credits_balance
from billing.services import credits_grant
from etl.models import DataSource, Record
from nexus.celery import app as celery_app
from nexus.models import IdempotencyRecord
from tenants.models import Role
from tenants.services import user_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/audits"
CRITERIA = "Anything a recruiter would frown at"


@pytest.fixture(autouse=True)
def _local_evaluator(settings):
    # The shared quota is exercised in test_quota.py; here it never holds a batch back.
    settings.AUDIT_PROVIDER_RPM = 100_000
    settings.AUDIT_PROVIDER_TPM = 100_000_000
    settings.AUDIT_CONCURRENCY_INITIAL = 16
    settings.AUDIT_CONCURRENCY_MAX = 16
    settings.GEMINI_API_KEY = ""


def _grant(org, amount: int) -> None:
    with tenant_context(org):
        credits_grant(amount=amount, reason="test", actor_label="operator:tests")


def _drain(broker, capture, *, limit: int = 1000) -> int:
    """Run the recorded messages as a worker does, in their schema, first in first out."""
    ran = 0
    while broker.messages and ran < limit:
        message = broker.messages.pop(0)
        with capture(execute=True):
            celery_app.tasks[message.task].apply(
                args=message.args, headers={"_schema_name": message.schema}, throw=True
            )
        connection.set_schema_to_public()
        ran += 1
    return ran


def _upload(client, data: bytes, name: str = "tweets.js", version: str = "v1", headers=None, **fields):
    body = {"file": SimpleUploadedFile(name, data), "criteria": CRITERIA, **fields}
    return client.post(f"/api/{version}/audits", body, format="multipart", headers=headers or {})


def _csv(rows: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["id", "text"])
    writer.writerows(rows)
    return out.getvalue().encode()


def _started(response) -> dict:
    assert response.status_code == 202, response.content
    return response.json()["data"]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "meta"} and body["meta"]["request_id"]
    assert body["error"]["code"] == code, body
    return body["error"]


def _nothing_written(org, balance: int) -> None:
    with tenant_context(org):
        assert not Audit.objects.exists()
        assert not AuditItem.objects.exists()
        assert credits_balance() == balance
        assert not CreditTransaction.objects.filter(kind="reservation").exists()


def _evaluated(world, api_as, broker, capture, data: bytes, name: str = "tweets.js", **fields) -> dict:
    """An audit started by org A's member, evaluated to the end."""
    with capture(execute=True):
        audit = _started(_upload(api_as(world.member_a), data, name, **fields))
    _drain(broker, capture)
    return api_as(world.member_a).get(f"{URL}/{audit['id']}").json()["data"]


def _csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text, newline="")))


# --- Starting an audit ------------------------------------------------------------------------


def test_a_member_starts_an_audit_of_an_x_archive_and_it_is_evaluated(
    world, api_as, broker, django_capture_on_commit_callbacks
):
    _grant(world.org_a, 1000)
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(api_as(world.member_a), x_archive_js(60, seed=3), keywords="party,weekend")
    audit = _started(response)
    assert audit["status"] == "queued"
    assert (audit["input_kind"], audit["input_name"]) == ("x_archive", "tweets.js")
    assert (audit["total"], audit["done"], audit["price_per_item"]) == (60, 0, 1)
    assert audit["credits_reserved"] == 60 and audit["credits_charged"] == 0
    assert audit["keywords"] == ["party", "weekend"]
    assert audit["created_by"] == str(world.member_a.pk)
    assert audit["links"] == {
        "items": f"/api/v1/audits/{audit['id']}/items",
        "results_csv": f"/api/v1/audits/{audit['id']}/results.csv",
    }
    assert [m.task for m in broker.messages] == ["audits.run_batch"] * 3  # 60 items, batches of 20

    _drain(broker, django_capture_on_commit_callbacks)
    done = api_as(world.member_a).get(f"{URL}/{audit['id']}").json()["data"]
    assert done["status"] == "completed"
    assert (done["done"], done["failed"], done["percent"]) == (60, 0, 100.0)
    assert done["flagged"] > 0
    assert done["credits_charged"] == 60 and done["credits_released"] == 0
    assert done["eta_seconds"] is None and done["finished_at"]
    with tenant_context(world.org_a):
        assert credits_balance() == 1000 - 60


def test_the_archive_zip_with_retweets_and_replies_left_out(
    world, api_as, broker, django_capture_on_commit_callbacks
):
    _grant(world.org_a, 1000)
    tweets = list(sample_tweets(80, seed=5))
    kept = [t for t in tweets if not (t.is_retweet or t.is_reply)]
    audit = _evaluated(
        world,
        api_as,
        broker,
        django_capture_on_commit_callbacks,
        x_archive_zip(80, seed=5),
        "twitter-2024.zip",
        skip_retweets="true",
        skip_replies="true",
    )
    assert (audit["input_kind"], audit["input_name"]) == ("x_archive", "twitter-2024.zip")
    assert audit["total"] == len(kept) and audit["skipped_input"] == 80 - len(kept)
    items = api_as(world.member_a).get(f"{URL}/{audit['id']}/items?limit=100").json()
    assert [item["external_id"] for item in items["data"]] == [t.id_str for t in kept]
    first = items["data"][0]
    assert first["id"] == 1 and first["url"] == kept[0].url and first["status"] == "evaluated"
    assert set(first) == {
        "id", "external_id", "text", "url", "created_at_source", "is_retweet", "is_reply", "truncated",
        "status", "flagged", "reason", "categories", "confidence", "error",
    }  # fmt: skip


def test_a_csv_is_recognised_by_its_content_whatever_its_name(
    world, api_as, broker, django_capture_on_commit_callbacks
):
    _grant(world.org_a, 100)
    data = _csv([("a1", "I hate Mondays"), ("a2", "Lovely coffee today")])
    audit = _evaluated(
        world, api_as, broker, django_capture_on_commit_callbacks, data, "export.txt", keywords=["mondays"]
    )
    assert (audit["input_kind"], audit["total"], audit["flagged"], audit["status"]) == (
        "csv",
        2,
        1,
        "completed",
    )


def test_keywords_and_categories_may_be_repeated_and_comma_separated(world, api_as, broker):
    _grant(world.org_a, 100)
    response = _upload(
        api_as(world.member_a),
        _csv([("1", "text")]),
        "a.csv",
        keywords=["one, two", "three"],
        categories=["rude,political"],
        batch_size="5",
    )
    audit = _started(response)
    assert audit["keywords"] == ["one", "two", "three"]
    assert audit["categories"] == ["rude", "political"]
    assert audit["batch_size"] == 5


def test_an_audit_of_the_organisations_records(world, api_as, broker, django_capture_on_commit_callbacks):
    _grant(world.org_a, 100)
    now = timezone.now()
    with tenant_context(world.org_a):
        source = DataSource.objects.create(
            name="News", kind="csv", config={}, field_mapping={"external_id": "id"}, required_fields=[]
        )
        other = DataSource.objects.create(
            name="Other", kind="csv", config={}, field_mapping={"external_id": "id"}, required_fields=[]
        )

        def record(src, key, title, body, published, url=""):
            return Record.objects.create(
                source=src, external_id=key, title=title, body=body, url=url, published_at=published,
                content_hash="0" * 40,
            )  # fmt: skip

        wanted = record(source, "1", "Budget vote", "The tax policy.", now, "https://news.example/1")
        record(source, "2", "Old budget", "Last year's tax.", now.replace(year=now.year - 1))
        record(source, "3", "Weather", "Sunny.", now)
        record(other, "4", "Budget elsewhere", "Tax.", now)
    body = {
        "records": {
            "source": str(source.pk),
            "from": str(now.date()),
            "to": str(now.date()),
            "search": "budget",
        },
        "criteria": CRITERIA,
    }
    with django_capture_on_commit_callbacks(execute=True):
        audit = _started(api_as(world.member_a).post(URL, body, format="json"))
    assert (audit["input_kind"], audit["input_name"], audit["total"]) == ("records", "Records of News", 1)
    _drain(broker, django_capture_on_commit_callbacks)
    item = api_as(world.member_a).get(f"{URL}/{audit['id']}/items").json()["data"][0]
    assert item["external_id"] == str(wanted.pk)
    assert item["text"] == "Budget vote\n\nThe tax policy."
    assert item["url"] == "https://news.example/1"
    assert item["flagged"] is True  # the lexicon's political words

    # Every source's records when none is named.
    everything = api_as(world.member_a).post(URL, {"records": {}, "criteria": CRITERIA}, format="json")
    assert _started(everything)["total"] == 4


def test_records_of_another_organisations_source_are_not_found(world, api_as, broker):
    _grant(world.org_a, 100)
    with tenant_context(world.org_b):
        theirs = DataSource.objects.create(
            name="Theirs", kind="csv", config={}, field_mapping={"external_id": "id"}, required_fields=[]
        )
        Record.objects.create(
            source=theirs, external_id="x", title="Budget", body="Tax", content_hash="0" * 40
        )
    client = api_as(world.admin_a)
    answers = [
        client.post(URL, {"records": {"source": str(source)}, "criteria": CRITERIA}, format="json")
        for source in (theirs.pk, uuid.uuid4())
    ]
    errors = [_error(answer, 404, "NOT_FOUND") for answer in answers]
    assert errors[0] == errors[1]  # "not yours" in the words of "does not exist"
    _nothing_written(world.org_a, 100)


def test_a_records_selection_matching_nothing_is_422(world, api_as):
    _grant(world.org_a, 100)
    response = api_as(world.member_a).post(
        URL, {"records": {"search": "x"}, "criteria": CRITERIA}, format="json"
    )
    error = _error(response, 422, "VALIDATION_ERROR")
    assert "records" in error["details"]["fields"]
    reversed_range = {"records": {"from": "2026-02-01", "to": "2026-01-01"}, "criteria": CRITERIA}
    _error(api_as(world.member_a).post(URL, reversed_range, format="json"), 422, "VALIDATION_ERROR")
    _nothing_written(world.org_a, 100)


# --- Refusals -----------------------------------------------------------------------------------


def test_a_bad_csv_line_is_422_invalid_file_naming_the_line(world, api_as, broker):
    _grant(world.org_a, 100)
    data = b"id,text\n1,fine\n2,also fine\n,no id here\n"
    error = _error(_upload(api_as(world.member_a), data, "a.csv"), 422, "INVALID_FILE")
    assert error["details"] == {"line": 4}
    assert "line 4" in error["message"]
    _nothing_written(world.org_a, 100)
    assert broker.messages == []


def test_a_bad_tweet_is_422_invalid_file_naming_the_item(world, api_as):
    _grant(world.org_a, 100)
    tweets = x_archive_js(20, seed=3)
    ids = [m.start(1) for m in re.finditer(rb'"id_str" : "(\d{19})"', tweets)]
    data = tweets[: ids[11]] + b"x" + tweets[ids[11] :]  # the 12th tweet's id is no longer digits
    error = _error(_upload(api_as(world.member_a), data), 422, "INVALID_FILE")
    assert error["details"]["item"] == 12
    _nothing_written(world.org_a, 100)


def test_a_zip_without_tweets_is_422_invalid_file(world, api_as):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("data/account.js", "window.YTD.account.part0 = []")
    _error(_upload(api_as(world.member_a), out.getvalue(), "archive.zip"), 422, "INVALID_FILE")


@pytest.mark.parametrize(
    "data",
    [b"", b"id,text\n", b"window.YTD.tweets.part0 = [ ]"],
    ids=["empty file", "csv without rows", "archive without tweets"],
)
def test_an_input_without_items_is_422(world, api_as, data):
    _grant(world.org_a, 100)
    _error(_upload(api_as(world.member_a), data, "x"), 422, "INVALID_FILE")
    _nothing_written(world.org_a, 100)


def test_an_archive_whose_tweets_are_all_left_out_is_422(world, api_as):
    _grant(world.org_a, 100)
    data = x_archive_js(10, seed=1, retweet_share=1.0)
    error = _error(_upload(api_as(world.member_a), data, skip_retweets="true"), 422, "INVALID_FILE")
    assert "left out" in error["message"]
    _nothing_written(world.org_a, 100)


def test_more_items_than_the_limit_is_422_too_many_items(world, api_as, settings):
    settings.AUDIT_MAX_ITEMS = 10
    _grant(world.org_a, 100)
    error = _error(_upload(api_as(world.member_a), x_archive_js(30, seed=1)), 422, "TOO_MANY_ITEMS")
    assert error["details"] == {"count": 11, "limit": 10}
    _nothing_written(world.org_a, 100)


def test_a_short_balance_is_402_with_the_price_and_the_items(world, api_as, broker):
    _grant(world.org_a, 10)
    error = _error(_upload(api_as(world.member_a), x_archive_js(25, seed=1)), 402, "PAYMENT_REQUIRED")
    assert error["details"] == {"balance": 10, "required": 25, "price_per_item": 1, "items": 25}
    _nothing_written(world.org_a, 10)
    assert broker.messages == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"criteria": ""}, "criteria"),
        ({"criteria": "x" * 2001}, "criteria"),
        ({"batch_size": "0"}, "batch_size"),
        ({"batch_size": "101"}, "batch_size"),
        ({"model": "no-such-model"}, "model"),
        ({"keywords": ["k"] * 51}, "keywords"),
        ({"file": None}, "file"),
    ],
)
def test_invalid_criteria_or_options_are_422_naming_the_field(world, api_as, fields, field):
    _grant(world.org_a, 100)
    body = {"file": SimpleUploadedFile("a.csv", _csv([("1", "x")])), "criteria": CRITERIA, **fields}
    body = {name: value for name, value in body.items() if value is not None}
    response = api_as(world.member_a).post(URL, body, format="multipart")
    error = _error(response, 422, "VALIDATION_ERROR")
    assert field in error["details"]["fields"], error
    _nothing_written(world.org_a, 100)


def test_a_file_over_the_limit_is_413_counted_while_it_streams(world, api_as, settings):
    """The body's claimed length is within the limit plus the form's allowance: only the
    bytes counted as they arrive can refuse it."""
    settings.AUDIT_MAX_UPLOAD_BYTES = 10_000
    _grant(world.org_a, 100)
    data = _csv([(str(n), f"row {n} " + "x" * 80) for n in range(300)])  # about 27 KB
    assert 10_000 < len(data) < 10_000 + 64 * 1024
    error = _error(_upload(api_as(world.member_a), data, "big.csv"), 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"limit_bytes": 10_000}
    _nothing_written(world.org_a, 100)


def test_a_part_understating_its_length_is_still_stopped_by_the_counted_bytes(world, api_as, settings):
    settings.AUDIT_MAX_UPLOAD_BYTES = 10_000
    content = b"id,text\n" + b"1,xxxxxxxxxx\n" * 2000
    body = (
        (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="x.csv"\r\n'
            "Content-Type: text/csv\r\n"
            "Content-Length: 10\r\n\r\n"
        ).encode()
        + content
        + f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="criteria"\r\n\r\n{CRITERIA}'.encode()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    response = api_as(world.member_a).generic("POST", URL, body, content_type=MULTIPART_CONTENT)
    _error(response, 413, "PAYLOAD_TOO_LARGE")


class _Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = read


def test_a_body_claiming_more_than_the_limit_is_413_before_it_is_read(world, api_as, settings):
    settings.AUDIT_MAX_UPLOAD_BYTES = 1000
    body = encode_multipart(BOUNDARY, {"file": ContentFile(b"id,text\n1,x\n", name="x.csv")})
    response = api_as(world.member_a).generic(
        "POST",
        URL,
        body,
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH=str(1000 + 64 * 1024 + 1),
        **{"wsgi.input": _Unreadable()},
    )
    assert _error(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"limit_bytes": 1000}


def test_a_json_body_keeps_the_apis_own_limit(world, api_as, settings):
    settings.API_MAX_BODY_BYTES = 2000
    body = {"records": {}, "criteria": "x " * 1500}
    response = api_as(world.member_a).post(URL, body, format="json")
    assert _error(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"limit_bytes": 2000}


# --- Idempotency ------------------------------------------------------------------------------------


def test_an_upload_retried_with_its_idempotency_key_is_one_audit(world, api_as, broker):
    """A file larger than Django keeps in memory (2.5 MB): the key's fingerprint is the
    digest counted as it streamed, never the body held whole."""
    _grant(world.org_a, 1000)
    client = api_as(world.member_a)
    data = _csv([(str(n), f"{n} " + "word " * 20_000) for n in range(30)])
    assert len(data) > 2_621_440
    key = {"Idempotency-Key": "audit-upload-1"}
    first = _started(_upload(client, data, "long.csv", headers=key))
    again = _upload(client, data, "long.csv", headers=key)
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["id"] == first["id"]
    with tenant_context(world.org_a):
        assert Audit.objects.count() == 1
        assert credits_balance() == 1000 - 30

    other_file = _upload(client, data + b"31,one more\n", "long.csv", headers=key)
    _error(other_file, 422, "IDEMPOTENCY_KEY_REUSED")
    other_criteria = client.post(
        URL,
        {"file": SimpleUploadedFile("long.csv", data), "criteria": "Something else"},
        format="multipart",
        headers=key,
    )
    _error(other_criteria, 422, "IDEMPOTENCY_KEY_REUSED")


def test_a_refused_upload_with_a_key_stores_nothing_it_could_replay_wrongly(world, api_as, settings):
    settings.AUDIT_MAX_UPLOAD_BYTES = 1000
    key = {"Idempotency-Key": "too-big"}
    response = _upload(api_as(world.member_a), b"id,text\n" + b"1,x\n" * 1000, "a.csv", headers=key)
    _error(response, 413, "PAYLOAD_TOO_LARGE")
    with tenant_context(world.org_a):
        assert not IdempotencyRecord.objects.filter(key="too-big").exists()


# --- Reading ------------------------------------------------------------------------------------


def test_audits_are_listed_newest_first_with_pagination_and_a_status_filter(world, api_as, broker):
    _grant(world.org_a, 100)
    client = api_as(world.member_a)
    ids = [_started(_upload(client, _csv([(str(n), "text")]), f"{n}.csv"))["id"] for n in range(3)]
    client.post(f"{URL}/{ids[0]}/cancel")
    listed = client.get(f"{URL}?limit=2").json()
    assert [a["id"] for a in listed["data"]] == ids[::-1][:2]
    assert (listed["meta"]["total"], listed["meta"]["limit"]) == (3, 2)
    assert [a["id"] for a in client.get(f"{URL}?status=cancelled").json()["data"]] == [ids[0]]
    _error(client.get(f"{URL}?status=nope"), 422, "VALIDATION_ERROR")
    # v2 is served by the same view, with the same shape; its links stay in v2.
    v1 = client.get(f"{URL}/{ids[1]}").json()["data"]
    v2 = client.get(f"/api/v2/audits/{ids[1]}").json()["data"]
    assert v2["links"]["items"] == f"/api/v2/audits/{ids[1]}/items"
    assert {**v2, "links": v1["links"]} == v1


def test_items_are_filtered_by_verdict_failure_and_text(
    world, api_as, broker, django_capture_on_commit_callbacks
):
    _grant(world.org_a, 100)
    rows = [("a", "I hate this"), ("b", "A calm day"), ("c", "Stupid idea"), ("d", "Nice coffee")]
    audit = _evaluated(world, api_as, broker, django_capture_on_commit_callbacks, _csv(rows), "a.csv")
    with tenant_context(world.org_a):  # the provider failed one item (arranged: the local one never does)
        AuditItem.objects.filter(audit_id=audit["id"], external_id="d").update(
            status=ItemStatus.FAILED, flagged=None, reason="", error="The provider refused it."
        )
    client = api_as(world.member_a)

    def ids(query: str) -> list[str]:
        response = client.get(f"{URL}/{audit['id']}/items?{query}")
        assert response.status_code == 200, response.content
        return [item["external_id"] for item in response.json()["data"]]

    assert ids("") == ["a", "b", "c", "d"]
    assert ids("flagged=true") == ["a", "c"]
    assert ids("flagged=false") == ["b", "d"]
    assert ids("failed=true") == ["d"]
    assert ids("failed=false") == ["a", "b", "c"]
    assert ids("flagged=true&failed=true") == ["a", "c", "d"]
    assert ids("search=STUPID") == ["c"]
    assert ids("search=b") == ["b"]
    assert ids("flagged=") == ["a", "b", "c", "d"]  # empty is absent
    _error(client.get(f"{URL}/{audit['id']}/items?flagged=yes"), 422, "VALIDATION_ERROR")
    _error(client.get(f"{URL}/{audit['id']}/items?search=" + "x" * 201), 422, "VALIDATION_ERROR")


def test_another_organisations_audit_is_not_found_on_every_route(world, api_as, broker):
    _grant(world.org_b, 100)
    theirs = _started(_upload(api_as(world.admin_b), _csv([("1", "secret text")]), "b.csv"))["id"]
    client = api_as(world.admin_a)
    for version in ("v1", "v2"):
        for method, path in [
            ("get", ""),
            ("get", "/items"),
            ("get", "/results.csv"),
            ("post", "/pause"),
            ("post", "/resume"),
            ("post", "/cancel"),
        ]:
            mine = getattr(client, method)(f"/api/{version}/audits/{theirs}{path}")
            nowhere = getattr(client, method)(f"/api/{version}/audits/{uuid.uuid4()}{path}")
            assert _error(mine, 404, "NOT_FOUND") == _error(nowhere, 404, "NOT_FOUND")
            assert "secret" not in mine.content.decode()
    with tenant_context(world.org_b):
        assert Audit.objects.get(pk=theirs).status == "queued"


# --- Pause, resume, cancel ---------------------------------------------------------------------------


def test_the_creator_pauses_resumes_and_cancels_and_wrong_transitions_are_409(
    world, api_as, broker, django_capture_on_commit_callbacks
):
    _grant(world.org_a, 1000)
    creator = api_as(world.member_a)
    with django_capture_on_commit_callbacks(execute=True):
        audit = _started(_upload(creator, x_archive_js(50, seed=2)))
    broker.messages.clear()  # lost: the batches below only run when resumed
    url = f"{URL}/{audit['id']}"

    paused = creator.post(f"{url}/pause")
    assert paused.status_code == 200 and paused.json()["data"]["status"] == "paused"
    assert paused.json()["data"]["paused_at"]
    error = _error(creator.post(f"{url}/pause"), 409, "CONFLICT")
    assert error["details"] == {"status": "paused", "action": "paused"}

    with django_capture_on_commit_callbacks(execute=True):
        resumed = creator.post(f"{url}/resume")
    assert resumed.status_code == 200 and resumed.json()["data"]["status"] == "queued"
    _error(creator.post(f"{url}/resume"), 409, "CONFLICT")
    _drain(broker, django_capture_on_commit_callbacks)
    assert creator.get(url).json()["data"]["status"] == "completed"
    for action in ("pause", "resume", "cancel"):
        assert _error(creator.post(f"{url}/{action}"), 409, "CONFLICT")["details"]["status"] == "completed"


def test_cancel_releases_the_credits_of_the_items_left(world, api_as, broker):
    _grant(world.org_a, 100)
    client = api_as(world.member_a)
    audit = _started(_upload(client, x_archive_js(40, seed=2)))
    cancelled = client.post(f"{URL}/{audit['id']}/cancel").json()["data"]
    assert cancelled["status"] == "cancelled"
    assert (cancelled["cancelled_items"], cancelled["credits_released"], cancelled["credits_charged"]) == (
        40,
        40,
        0,
    )
    with tenant_context(world.org_a):
        assert credits_balance() == 100


def test_another_member_may_not_pause_an_audit_but_an_admin_may(world, api_as, broker):
    _grant(world.org_a, 100)
    audit = _started(_upload(api_as(world.member_a), _csv([("1", "x"), ("2", "y")]), "a.csv"))
    other = user_create(email="other@org-a.test", organisation=world.org_a, role=Role.MEMBER, name="Other")
    for action in ("pause", "cancel", "resume"):
        error = _error(api_as(other).post(f"{URL}/{audit['id']}/{action}"), 403, "FORBIDDEN")
        assert "creator" in error["message"]
    # Any member reads it.
    assert api_as(other).get(f"{URL}/{audit['id']}").status_code == 200
    assert api_as(world.admin_a).post(f"{URL}/{audit['id']}/pause").json()["data"]["status"] == "paused"
    assert api_as(world.admin_a).post(f"{URL}/{audit['id']}/cancel").json()["data"]["status"] == "cancelled"


def test_a_member_may_start_an_audit_like_a_job(world, api_as):
    _grant(world.org_a, 100)
    assert _upload(api_as(world.member_a), _csv([("1", "x")]), "a.csv").status_code == 202
    assert _upload(api_as(world.admin_a), _csv([("1", "x")]), "a.csv").status_code == 202


# --- Results as CSV ----------------------------------------------------------------------------------


def test_the_results_of_an_x_archive_are_its_flagged_tweets_for_the_deletion_tool(
    world, api_as, broker, django_capture_on_commit_callbacks
):
    _grant(world.org_a, 1000)
    audit = _evaluated(
        world, api_as, broker, django_capture_on_commit_callbacks, x_archive_js(80, seed=4), keywords="coffee"
    )
    response = api_as(world.member_a).get(f"{URL}/{audit['id']}/results.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="audit-{audit["id"]}-results.csv"'
    header, *rows = _csv_rows(response)
    assert header == ["tweet_url", "deleted", "reason", "categories", "confidence"]
    with tenant_context(world.org_a):
        flagged = list(
            AuditItem.objects.filter(audit_id=audit["id"], flagged=True)
            .order_by("seq")
            .values_list("url", "reason", "categories", "confidence")
        )
    assert len(rows) == len(flagged) == audit["flagged"] > 0
    for row, (url, reason, categories, confidence) in zip(rows, flagged, strict=True):
        assert row == [url, "", reason, ";".join(categories), f"{confidence:.2f}"]

    everything = _csv_rows(api_as(world.member_a).get(f"{URL}/{audit['id']}/results.csv?all=true"))
    assert everything[0] == ["tweet_url", "deleted", "reason", "categories", "confidence", "flagged"]
    assert len(everything) - 1 == audit["done"] == 80
    assert sum(row[-1] == "true" for row in everything[1:]) == audit["flagged"]
    assert {row[-1] for row in everything[1:]} == {"true", "false"}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def test_no_cell_of_the_results_can_run_as_a_formula(
    world, api_as, broker, django_capture_on_commit_callbacks
):
    """The sample generator's texts start with =, +, - and @ now and then; tab and carriage
    return are added, and reasons starting with each of them are arranged."""
    _grant(world.org_a, 1000)
    samples = list(sample_tweets(200, seed=7))
    rows = [(s.id_str, s.text) for s in samples]
    rows += [("tab", "\thate behind a tab"), ("cr", "\rhate behind a carriage return")]
    rows += [(f"{start}id", f"{start}hate, starting with {start!r}") for start in "=+-@"]
    assert {text[0] for _, text in rows} >= set(FORMULA_STARTS)
    audit = _evaluated(
        world, api_as, broker, django_capture_on_commit_callbacks, _csv(rows), "posts.csv", keywords="hate"
    )
    with tenant_context(world.org_a):
        for start, item_id in zip(FORMULA_STARTS, ("=id", "+id", "-id", "@id", "tab", "cr"), strict=True):
            AuditItem.objects.filter(audit_id=audit["id"], external_id=item_id).update(
                reason=f"{start}cmd|' /C calc'!A0"
            )
    header, *lines = _csv_rows(api_as(world.member_a).get(f"{URL}/{audit['id']}/results.csv?all=true"))
    assert header == ["id", "url", "text", "reason", "categories", "confidence", "flagged"]
    assert len(lines) == len(rows)
    by_id = {line[0]: line for line in lines}
    for start in "=+-@":
        line = by_id[f"'{start}id"]
        assert line[2] == f"'{start}hate, starting with {start!r}"
        assert line[3] == f"'{start}cmd|' /C calc'!A0"
    assert by_id["tab"][2] == "'\thate behind a tab" and by_id["tab"][3].startswith("'\t")
    assert by_id["cr"][2] == "'\rhate behind a carriage return" and by_id["cr"][3].startswith("'\r")
    starts_formula = [s for s in samples if s.text.startswith(FORMULA_STARTS)]
    assert starts_formula, "the generator's formula-like texts"
    for sample in starts_formula:
        assert by_id[sample.id_str][2] == "'" + sample.text
    for line in lines:
        assert not any(cell.startswith(FORMULA_STARTS) for cell in line), line

    flagged_only = _csv_rows(api_as(world.member_a).get(f"{URL}/{audit['id']}/results.csv"))
    assert flagged_only[0] == ["id", "url", "text", "reason", "categories", "confidence"]
    assert len(flagged_only) - 1 == audit["flagged"]


def test_the_results_answer_text_csv_and_errors_stay_json(world, api_as, broker):
    _grant(world.org_a, 100)
    client = api_as(world.member_a)
    audit = _started(_upload(client, _csv([("1", "x")]), "a.csv"))
    csv_only = client.get(f"{URL}/{audit['id']}/results.csv", HTTP_ACCEPT="text/csv")
    assert _csv_rows(csv_only) == [["id", "url", "text", "reason", "categories", "confidence"]]  # none yet
    missing = client.get(f"{URL}/{uuid.uuid4()}/results.csv", HTTP_ACCEPT="text/csv")
    assert missing["Content-Type"] == "application/json"
    _error(missing, 404, "NOT_FOUND")
    _error(client.get(f"{URL}/{audit['id']}/results.csv?all=maybe"), 422, "VALIDATION_ERROR")


def test_the_results_are_read_in_chunks_within_the_organisations_schema(
    world, api_as, broker, django_capture_on_commit_callbacks, monkeypatch
):
    """Streamed after the view returned (and the request left the organisation's schema):
    more rows than one chunk still come from the organisation's own items, and the
    connection is back in public afterwards."""
    _grant(world.org_a, 1000)
    audit = _evaluated(
        world,
        api_as,
        broker,
        django_capture_on_commit_callbacks,
        x_archive_js(120, seed=9),
        keywords="coffee",
    )
    monkeypatch.setattr(csv_export, "READ_CHUNK", 7)
    response = api_as(world.member_a).get(f"{URL}/{audit['id']}/results.csv?all=true")
    assert connection.schema_name == "public"  # nothing read yet
    lines = _csv_rows(response)
    assert [line[0] for line in lines[1:]] == [t.url for t in sample_tweets(120, seed=9)]
    assert connection.schema_name == "public"
