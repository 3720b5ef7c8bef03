"""The audit pages through Django's test client: the list and the form (its refusals shown
in place, never a 500), an audit's progress refreshed until it ends, pause / resume /
cancel for those allowed, the flagged items, and another organisation's audit as a 404.
The browser test (nexus/tests/browser/test_audits_in_chromium.py) drives the same pages."""

from __future__ import annotations

import csv
import html
import io
import re
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.utils.html import escape
from django_tenants.utils import tenant_context

from audits import services
from audits.inputs import parse_x_archive
from audits.models import Audit, AuditStatus
from audits.samples import sample_tweets, x_archive_js, x_archive_zip
from billing.selectors import credits_balances
from billing.services import credits_grant
from nexus.celery import app as celery_app
from nexus.redis import get_redis, redis_key

pytestmark = pytest.mark.django_db

CRITERIA = "Insults and anything about elections"


@pytest.fixture(autouse=True)
def _local_evaluator(settings):
    settings.GEMINI_API_KEY = ""  # the local evaluator: deterministic and offline
    settings.AUDIT_PROVIDER_RPM = 100_000
    settings.AUDIT_PROVIDER_TPM = 100_000_000
    settings.AUDIT_CONCURRENCY_INITIAL = 16
    settings.AUDIT_CONCURRENCY_MAX = 16


@pytest.fixture
def member(world):
    client = Client()
    client.force_login(world.member_a)
    return client


@pytest.fixture
def admin(world):
    client = Client()
    client.force_login(world.admin_a)
    return client


def _fund(org, amount: int) -> None:
    with tenant_context(org):
        credits_grant(amount=amount, reason="test funding", actor_label="operator:tests")


def _audits(org) -> list[Audit]:
    with tenant_context(org):
        return list(Audit.objects.order_by("created_at"))


def _upload(content: bytes, name: str = "tweets.js", **fields) -> dict:
    return {"file": SimpleUploadedFile(name, content), "criteria": CRITERIA, **fields}


@pytest.fixture
def create(broker, django_capture_on_commit_callbacks):
    """create(org, user, n) -> an audit made through the service, as the form makes it; its
    first batch messages recorded by the broker, not yet run."""

    def make(org, user, n: int = 60, *, batch_size: int = 20) -> Audit:
        with django_capture_on_commit_callbacks(execute=True):
            return _create(org, user, n, batch_size=batch_size)

    return make


def _create(org, user, n: int, *, batch_size: int) -> Audit:
    _fund(org, 1000)
    with tenant_context(org):
        return services.audit_create(
            user=user,
            input_kind="x_archive",
            input_name="tweets.js",
            items=parse_x_archive(
                io.BytesIO(x_archive_js(n, seed=5)), max_items=10_000, max_item_chars=10_000
            ),
            options=services.audit_criteria_check(
                criteria=CRITERIA, keywords=["idiot"], batch_size=batch_size
            ),
        )


def _run_batches(broker, django_capture_on_commit_callbacks) -> None:
    """The recorded batch messages, run as the worker runs them, in their schema."""
    while broker.messages:
        message = broker.messages.pop(0)
        with django_capture_on_commit_callbacks(execute=True):
            celery_app.tasks[message.task].apply(
                args=message.args, headers={"_schema_name": message.schema}, throw=True
            )
        connection.set_schema_to_public()


def _field_error(page: str, field: str) -> str:
    found = re.search(rf'data-field-error="{field}">(.*?)</p>', page, flags=re.S)
    assert found, f"no error shown next to {field}"
    return html.unescape(" ".join(found.group(1).split()))


def _status(org, audit) -> str:
    with tenant_context(org):
        return Audit.objects.get(pk=audit.pk).status


# --- The list and the form ---------------------------------------------------------------------------


def test_the_audits_page_shows_the_form_with_labels_the_price_and_the_balance(member, world, settings):
    settings.AUDIT_PRICE_PER_ITEM = 2
    _fund(world.org_a, 300)
    response = member.get("/audits")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<a href="/audits" aria-current="page">Audits</a>' in page
    for field_id, label in (
        ("audit-file", "File"),
        ("audit-criteria", "What should be flagged"),
        ("audit-keywords", "Keywords"),
        ("audit-skip-retweets", "Leave out retweets"),
        ("audit-skip-replies", "Leave out replies"),
        ("audit-batch-size", "Items per request"),
    ):
        assert re.search(rf'<label for="{field_id}">\s*(<input[^>]*>\s*)?{label}', page), label
    price = " ".join(re.search(r"data-audit-price>(.*?)</p>", page, flags=re.S).group(1).split())
    assert "Each item costs <strong>2 credits</strong>" in price
    assert "<strong data-balance>300</strong> credits" in price
    assert "enough for 150 items" in price
    assert 'enctype="multipart/form-data"' in page
    assert "No audits yet." in page


def test_starting_an_audit_reserves_its_credits_and_lands_on_its_page(member, world, broker):
    _fund(world.org_a, 1000)
    tweets = list(sample_tweets(40, seed=9))
    retweets = sum(t.is_retweet for t in tweets)
    response = member.post(
        "/audits",
        _upload(x_archive_js(40, seed=9), keywords="idiot, vote", skip_retweets="on", batch_size="10"),
    )
    (audit,) = _audits(world.org_a)
    assert response.status_code == 302
    assert response["Location"] == f"/audits/{audit.pk}"
    assert audit.total == 40 - retweets and audit.skipped_input == retweets
    assert audit.created_by_id == world.member_a.pk
    assert audit.input_name == "tweets.js" and audit.input_kind == "x_archive"
    assert audit.keywords == ["idiot", "vote"] and audit.batch_size == 10
    assert audit.credits_reserved == audit.total
    with tenant_context(world.org_a):
        assert credits_balances() == (1000 - audit.total, audit.total)
    assert broker.messages == [] or {m.task for m in broker.messages} == {services.RUN_BATCH_TASK}
    page = member.get(response["Location"]).content.decode()
    assert f"Audit started: {audit.total} items, {audit.total} credits reserved" in page
    assert f"{retweets} retweets or replies left out" in page


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("archive.zip", x_archive_zip(12, seed=2), "x_archive"),
        ("posts.csv", b"id,text,url\n1,hello there,https://example.test/1\n2,you idiot,\n", "csv"),
    ],
)
def test_a_zip_archive_and_a_csv_start_audits_too(member, world, name, content, kind):
    _fund(world.org_a, 100)
    response = member.post("/audits", _upload(content, name))
    assert response.status_code == 302, response.content.decode()[:500]
    (audit,) = _audits(world.org_a)
    assert (audit.input_kind, audit.input_name) == (kind, name)


def test_too_few_credits_is_402_in_place_with_the_count_and_nothing_is_created(member, world):
    _fund(world.org_a, 10)
    response = member.post("/audits", _upload(x_archive_js(30, seed=1), keywords="vote"))
    assert response.status_code == 402
    page = response.content.decode()
    error = " ".join(re.search(r"data-form-error>(.*?)</article>", page, flags=re.S).group(1).split())
    assert "Not enough credits: this file holds 30 items to evaluate" in error
    assert "need 30 credits, and the available balance is 10" in error
    assert '<a href="/billing">Buy credits</a>' in error
    assert f">{CRITERIA}</textarea>" in page  # what was typed is kept
    assert 'value="vote"' in page
    assert _audits(world.org_a) == []
    with tenant_context(world.org_a):
        assert credits_balances() == (10, 0)


def test_a_file_over_the_upload_limit_is_413_in_place_and_nothing_is_created(member, world, settings):
    settings.AUDIT_MAX_UPLOAD_BYTES = 2000
    _fund(world.org_a, 1000)
    response = member.post("/audits", _upload(x_archive_js(40, seed=1)))
    assert response.status_code == 413
    page = response.content.decode()
    assert "The file is larger than the upload limit of 2000 bytes" in _field_error(page, "file")
    assert 'aria-invalid="true"' in page
    assert _audits(world.org_a) == []


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (b"id,text\n1,hello\n1,again\n", "posts.csv", "The id '1' repeats the id of line 2 (line 3)."),
        (b"id,body\n1,hello\n", "posts.csv", "no text column (line 1)"),
        (
            x_archive_js(3, seed=4)
            .replace(b'"full_text"', b'"not_the_text"', 2)
            .replace(b'"not_the_text"', b'"full_text"', 1),
            "tweets.js",
            "Item 2 (id ",
        ),
        (b"window.YTD.tweets.part0 = [ ]", "tweets.js", "The archive holds no tweets."),
        (b"\x00\x01 not a file we read", "mystery.bin", "line 1"),
    ],
    ids=["repeated-id", "no-text-column", "tweet-without-text", "no-items", "garbage"],
)
def test_an_unreadable_file_is_422_naming_the_line_or_item_next_to_the_field(
    member, world, content, name, expected
):
    _fund(world.org_a, 1000)
    response = member.post("/audits", _upload(content, name))
    assert response.status_code == 422
    assert expected in _field_error(response.content.decode(), "file")
    assert _audits(world.org_a) == []


def test_more_items_than_an_audit_takes_is_422_with_the_limit(member, world, settings):
    settings.AUDIT_MAX_ITEMS = 10
    _fund(world.org_a, 1000)
    response = member.post("/audits", _upload(x_archive_js(25, seed=1)))
    assert response.status_code == 422
    assert "more than 10 items; one audit takes at most 10" in _field_error(response.content.decode(), "file")
    assert _audits(world.org_a) == []


@pytest.mark.parametrize(
    ("fields", "field", "expected"),
    [
        ({"criteria": "   "}, "criteria", "Describe what should be flagged."),
        ({"criteria": "x" * 2001}, "criteria", "At most 2000 characters."),
        ({"batch_size": "500"}, "batch_size", "Between 1 and 100."),
        ({"batch_size": "many"}, "batch_size", "Enter a whole number."),
        ({"keywords": ",".join(f"k{n}" for n in range(51))}, "keywords", "At most 50 entries."),
        ({"categories": "x" * 101}, "categories", "at most 100 characters"),
        ({"model": "gpt-0"}, "model", "Choose one of"),
    ],
)
def test_criteria_and_options_are_checked_by_the_service_and_shown_at_their_field(
    member, world, fields, field, expected
):
    _fund(world.org_a, 1000)
    response = member.post("/audits", {**_upload(x_archive_js(5)), **fields})
    assert response.status_code == 422
    assert expected in _field_error(response.content.decode(), field)
    assert _audits(world.org_a) == []


def test_a_missing_file_is_shown_at_the_file_field(member, world):
    response = member.post("/audits", {"criteria": CRITERIA})
    assert response.status_code == 422
    assert "Choose the file to audit." in _field_error(response.content.decode(), "file")


def test_the_form_is_protected_against_cross_site_posts(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.member_a)
    _fund(world.org_a, 100)
    response = client.post("/audits", _upload(x_archive_js(3)))
    assert response.status_code == 403
    assert _audits(world.org_a) == []


def test_signed_out_visitors_are_sent_to_sign_in_and_nothing_is_read(client, world):
    assert client.get("/audits")["Location"] == "/accounts/login/?next=/audits"
    response = client.post("/audits", _upload(x_archive_js(3)), HTTP_REFERER="http://testserver/audits")
    assert response["Location"] == "/accounts/login/?next=/audits"
    audit_id = uuid.uuid4()
    assert client.get(f"/audits/{audit_id}")["Location"] == f"/accounts/login/?next=/audits/{audit_id}"


def test_the_list_shows_each_audit_with_status_progress_and_flagged(
    create, member, world, broker, django_capture_on_commit_callbacks
):
    audit = create(world.org_a, world.member_a, 40)
    _run_batches(broker, django_capture_on_commit_callbacks)
    page = member.get("/audits").content.decode()
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    row = re.search(rf'<a href="/audits/{audit.pk}">tweets.js</a>.*?</tr>', page, flags=re.S).group(0)
    assert "Completed" in row and ">100 %<" in row
    assert f'data-label="Flagged">{audit.flagged}<' in row
    assert audit.flagged > 0


def test_starting_an_audit_counts_against_the_organisations_rate_limit(member, world):
    org = world.org_a
    org.api_rate_limit = 1
    org.save(update_fields=["api_rate_limit"])
    key = redis_key("ratelimit", str(org.id))
    get_redis().delete(key)
    _fund(org, 1000)
    try:
        assert member.post("/audits", _upload(x_archive_js(3))).status_code == 302
        refused = member.post("/audits", _upload(x_archive_js(3)))
        assert refused.status_code == 429
        assert "Nothing was charged or started" in refused.content.decode()
        assert len(_audits(org)) == 1
    finally:
        get_redis().delete(key)


# --- One audit ---------------------------------------------------------------------------------------


def test_a_running_audit_polls_for_its_progress_and_stops_once_finished(
    create, member, world, broker, django_capture_on_commit_callbacks
):
    audit = create(world.org_a, world.member_a, 60)
    page = member.get(f"/audits/{audit.pk}").content.decode()
    assert 'role="progressbar"' in page and 'aria-valuenow="0"' in page
    assert 'aria-valuetext="0 of 60 items (0 %)"' in page
    assert 'hx-trigger="every 2s"' in page
    assert (
        f'hx-get="/audits/{audit.pk}/progress?shown=queued&amp;flagged=0&amp;failed=0&amp;items=flagged&amp;page=1"'
        in page
    )
    assert "No item flagged so far." in page

    still = member.get(f"/audits/{audit.pk}/progress", {"shown": "queued", "flagged": 0, "failed": 0})
    assert 'hx-trigger="every 2s"' in still.content.decode()
    assert "hx-swap-oob" not in still.content.decode()  # nothing new: only the progress

    _run_batches(broker, django_capture_on_commit_callbacks)
    done = member.get(f"/audits/{audit.pk}/progress", {"shown": "queued", "flagged": 0, "failed": 0})
    text = done.content.decode()
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    assert audit.status == AuditStatus.COMPLETED and audit.flagged > 0
    assert 'aria-valuenow="100"' in text and "hx-trigger" not in text  # polling stops
    assert 'id="audit-controls"' in text and 'id="audit-items"' in text  # the news, out of band
    assert 'hx-swap-oob="innerHTML:#audit-announce">Audit completed.' in text
    assert text.count("data-audit-item>") == min(audit.flagged, 25)
    again = member.get(
        f"/audits/{audit.pk}/progress", {"shown": "completed", "flagged": audit.flagged, "failed": 0}
    ).content.decode()
    assert "hx-swap-oob" not in again and "hx-trigger" not in again


def test_the_audit_page_shows_counts_flagged_items_with_reasons_paginated_and_the_csv(
    create, member, world, broker, django_capture_on_commit_callbacks
):
    audit = create(world.org_a, world.member_a, 200, batch_size=50)
    _run_batches(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        first = audit.items.filter(flagged=True).order_by("seq").first()
    assert audit.flagged > 25, "the sample should flag more than a page"
    page = member.get(f"/audits/{audit.pk}").content.decode()
    assert 'aria-valuenow="100"' in page and "hx-trigger" not in page
    assert f"data-audit-flagged>{audit.flagged}<" in page
    assert f"data-audit-charged>{audit.credits_charged} of {audit.credits_reserved} set aside" in page
    assert page.count("data-audit-item>") == 25
    assert f'<a href="{first.url}" rel="noopener noreferrer">{first.external_id}</a>' in page
    assert escape(first.reason) in page and escape(", ".join(first.categories)) in page
    assert f"Page 1 of {-(-audit.flagged // 25)}" in page
    assert f'href="/audits/{audit.pk}/results.csv" download' in page
    second = member.get(f"/audits/{audit.pk}", {"page": 2}).content.decode()
    assert second.count("data-audit-item>") == min(25, audit.flagged - 25)
    failed = member.get(f"/audits/{audit.pk}", {"items": "failed"}).content.decode()
    assert "No item failed." in failed


def test_the_creator_pauses_and_resumes_in_place(create, member, world, broker):
    audit = create(world.org_a, world.member_a)
    paused = member.post(
        f"/audits/{audit.pk}/action?items=flagged&page=1", {"action": "pause"}, HTTP_HX_REQUEST="true"
    )
    assert paused.status_code == 200
    text = paused.content.decode()
    assert _status(world.org_a, audit) == AuditStatus.PAUSED
    assert text.lstrip().startswith('<div id="audit-controls"')
    assert ">Resume</button>" in text and "Paused. Batches already sent finish" in text
    assert 'id="audit-progress"' in text and 'hx-swap-oob="true"' in text
    assert 'hx-trigger="every 10s"' in text  # a paused audit is asked about less often
    resumed = member.post(f"/audits/{audit.pk}/action", {"action": "resume"}, HTTP_HX_REQUEST="true")
    assert ">Pause</button>" in resumed.content.decode()
    assert _status(world.org_a, audit) == AuditStatus.QUEUED


def test_without_javascript_an_action_comes_back_to_the_page_with_a_message(create, member, world):
    audit = create(world.org_a, world.member_a)
    response = member.post(f"/audits/{audit.pk}/action", {"action": "pause"})
    assert response.status_code == 302 and response["Location"] == f"/audits/{audit.pk}"
    page = member.get(response["Location"]).content.decode()
    assert "Paused. Batches already sent finish" in page
    assert _status(world.org_a, audit) == AuditStatus.PAUSED


def test_a_transition_the_status_does_not_allow_is_a_message_not_an_error(create, member, world):
    audit = create(world.org_a, world.member_a)
    refused = member.post(f"/audits/{audit.pk}/action", {"action": "resume"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 200  # swapped in place, read out as an alert
    assert "data-audit-action-error>A queued audit cannot be resumed.</p>" in refused.content.decode()
    back = member.post(f"/audits/{audit.pk}/action", {"action": "resume"}, follow=True)
    assert "A queued audit cannot be resumed." in back.content.decode()
    assert _status(world.org_a, audit) == AuditStatus.QUEUED
    unknown = member.post(f"/audits/{audit.pk}/action", {"action": "explode"}, HTTP_HX_REQUEST="true")
    assert "Choose pause, resume or cancel." in unknown.content.decode()


def test_cancelling_asks_first_then_releases_the_credits(create, member, world):
    audit = create(world.org_a, world.member_a, 60)
    asked = member.post(f"/audits/{audit.pk}/action", {"action": "cancel"})
    assert asked.status_code == 200
    assert "This cannot be undone." in asked.content.decode()
    assert _status(world.org_a, audit) == AuditStatus.QUEUED
    done = member.post(f"/audits/{audit.pk}/action", {"action": "cancel", "confirmed": "cancel"}, follow=True)
    page = done.content.decode()
    assert "Cancelled. The items not evaluated were cancelled and their credits released." in page
    assert "Cancel the audit</button>" not in page and "hx-trigger" not in page
    with tenant_context(world.org_a):
        audit.refresh_from_db()
        assert credits_balances() == (1000, 0)
    assert (audit.status, audit.credits_released) == (AuditStatus.CANCELLED, 60)


def test_only_an_admin_or_the_creator_may_pause_resume_or_cancel(create, member, admin, world):
    theirs = create(world.org_a, world.admin_a)
    page = member.get(f"/audits/{theirs.pk}").content.decode()
    assert "Only an admin or the person who started this audit can pause, resume or cancel it." in page
    assert ">Pause</button>" not in page
    for action in ("pause", "cancel"):
        refused = member.post(
            f"/audits/{theirs.pk}/action", {"action": action, "confirmed": action}, HTTP_HX_REQUEST="true"
        )
        assert (
            f"Only an admin or the person who started this audit can {action} it." in refused.content.decode()
        )
    assert _status(world.org_a, theirs) == AuditStatus.QUEUED
    # An admin may act on a member's audit.
    mine = create(world.org_a, world.member_a)
    assert ">Pause</button>" in admin.get(f"/audits/{mine.pk}").content.decode()
    admin.post(f"/audits/{mine.pk}/action", {"action": "pause"})
    assert _status(world.org_a, mine) == AuditStatus.PAUSED


def test_another_organisations_audit_is_the_404_page_everywhere(create, member, world):
    theirs = create(world.org_b, world.admin_b)
    for response in (
        member.get(f"/audits/{theirs.pk}"),
        member.get(f"/audits/{theirs.pk}/progress", HTTP_HX_REQUEST="true"),
        member.post(f"/audits/{theirs.pk}/action", {"action": "pause"}),
        member.post(f"/audits/{theirs.pk}/action", {"action": "cancel", "confirmed": "cancel"}),
    ):
        assert response.status_code == 404
        assert "404.html" in [t.name for t in response.templates]
        assert "tweets.js" not in response.content.decode()
    assert _status(world.org_b, theirs) == AuditStatus.QUEUED
    assert member.get(f"/audits/{uuid.uuid4()}").status_code == 404


def test_the_results_download_streams_the_apis_csv(
    create, member, world, broker, django_capture_on_commit_callbacks
):
    audit = create(world.org_a, world.member_a, 80)
    _run_batches(broker, django_capture_on_commit_callbacks)
    with tenant_context(world.org_a):
        audit.refresh_from_db()
    response = member.get(f"/audits/{audit.pk}/results.csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="audit-{audit.pk}-results.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["tweet_url", "deleted", "reason", "categories", "confidence"]
    assert len(rows) == 1 + audit.flagged
    everything = b"".join(member.get(f"/audits/{audit.pk}/results.csv", {"all": "true"}).streaming_content)
    assert len(list(csv.reader(io.StringIO(everything.decode())))) == 1 + audit.done - audit.failed
