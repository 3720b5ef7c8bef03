"""Reading the audit log: the API (admins only, never keys), its CSV export, the page, and
the operators' read-only admin. An organisation only ever sees its own events."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from auditlog.context import Actor
from auditlog.csv_export import HEADER
from auditlog.models import AuditEvent
from auditlog.services import audit_record
from tenants.apikeys import SCOPES
from tenants.models import User
from tenants.services import keys

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit-log"
EXPORT = "/api/v1/audit-log/export.csv"


def _actor(user: User) -> Actor:
    return Actor(
        kind="user", label=f"user:{user.email}", id=str(user.pk), ip="127.0.0.1", user_agent="pytest agent"
    )


def _insert_at(created_at: str, organisation_id, action: str, label: str) -> int:
    """An event as of `created_at` (auto_now_add would ignore a given value)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO public.auditlog_auditevent (created_at, organisation_id, actor_kind, actor_id, "
            "actor_label, action, target_type, target_id, target_label, changes, ip, user_agent, request_id) "
            "VALUES (%s, %s, 'system', '', 'system', %s, 'credits', '', %s, '{}', NULL, '', '') RETURNING id",
            [created_at, organisation_id, action, label],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def events(world) -> dict[str, AuditEvent]:
    """A few events in each organisation, recorded in this order (so newest last)."""
    a, b = world.org_a.pk, world.org_b.pk
    admin_a, admin_b = _actor(world.admin_a), _actor(world.admin_b)
    key = Actor(kind="key", label="key:ci", id=str(uuid.uuid4()))
    recorded = {
        "role": audit_record(
            action="member.role_changed",
            organisation_id=a,
            target_type="member",
            target_id=world.member_a.pk,
            target_label=world.member_a.email,
            before={"role": "member"},
            after={"role": "admin"},
            actor=admin_a,
        ),
        "webhook": audit_record(
            action="webhook.created",
            organisation_id=a,
            target_type="webhook",
            target_id=uuid.uuid4(),
            target_label="https://hooks.example/in",
            after={"url": "https://hooks.example/in"},
            actor=key,
        ),
        "removed": audit_record(
            action="member.removed",
            organisation_id=a,
            target_type="member",
            target_id=world.member_a.pk,
            target_label=world.member_a.email,
            before={"role": "admin"},
            actor=admin_a,
        ),
        "theirs": audit_record(
            action="member.removed",
            organisation_id=b,
            target_type="member",
            target_id=world.member_b.pk,
            target_label=world.member_b.email,
            actor=admin_b,
        ),
        "theirs_webhook": audit_record(
            action="webhook.created",
            organisation_id=b,
            target_type="webhook",
            target_id=uuid.uuid4(),
            target_label="https://b.example/in",
            actor=admin_b,
        ),
        "nobody": audit_record(
            action="auth.sign_in_failed",
            organisation_id=None,
            target_type="user",
            target_label="ghost@nowhere.example",
            facts={"reason": "wrong_credentials", "method": "password"},
        ),
    }
    return recorded


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["data"]]


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


# --- The list ---------------------------------------------------------------------------------


def test_an_admin_lists_only_their_organisations_events_newest_first(world, api_as, events):
    response = api_as(world.admin_a).get(URL)
    assert _ids(response) == [events["removed"].pk, events["webhook"].pk, events["role"].pk]
    body = response.json()
    assert body["meta"]["page"] == 1
    assert body["meta"]["limit"] == 20
    assert body["meta"]["total"] == 3
    first = body["data"][0]
    assert first["action"] == "member.removed"
    assert first["actor"] == "user:admin@org-a.test"
    assert first["actor_kind"] == "user"
    assert first["actor_id"] == str(world.admin_a.pk)
    assert first["target"] == {
        "type": "member",
        "id": str(world.member_a.pk),
        "label": "member@org-a.test",
    }
    assert first["changes"] == {"before": {"role": "admin"}, "after": {}}
    assert (first["ip"], first["user_agent"]) == ("127.0.0.1", "pytest agent")
    # Org B's admin sees theirs, never A's (nor the event of no organisation).
    assert _ids(api_as(world.admin_b).get(URL)) == [events["theirs_webhook"].pk, events["theirs"].pk]


def test_the_list_is_paginated(world, api_as, events):
    client = api_as(world.admin_a)
    page_one = client.get(URL, {"limit": 2})
    assert _ids(page_one) == [events["removed"].pk, events["webhook"].pk]
    assert page_one.json()["meta"] == {**page_one.json()["meta"], "page": 1, "limit": 2, "total": 3}
    page_two = client.get(URL, {"limit": 2, "page": 2})
    assert _ids(page_two) == [events["role"].pk]
    assert page_two.json()["meta"]["page"] == 2
    assert _ids(client.get(URL, {"limit": 2, "page": 3})) == []


def test_filter_by_actor_label_or_id(world, api_as, events):
    client = api_as(world.admin_a)
    assert _ids(client.get(URL, {"actor": "user:admin@org-a.test"})) == [
        events["removed"].pk,
        events["role"].pk,
    ]
    assert _ids(client.get(URL, {"actor": str(world.admin_a.pk)})) == [
        events["removed"].pk,
        events["role"].pk,
    ]
    assert _ids(client.get(URL, {"actor": "key:ci"})) == [events["webhook"].pk]
    # Another organisation's actor finds nothing here.
    assert _ids(client.get(URL, {"actor": "user:admin@org-b.test"})) == []
    assert _error(client.get(URL, {"actor": "x" * 301}), 422)["code"] == "VALIDATION_ERROR"


def test_filter_by_action_exactly_or_by_family(world, api_as, events):
    client = api_as(world.admin_a)
    assert _ids(client.get(URL, {"action": "member.removed"})) == [events["removed"].pk]
    assert _ids(client.get(URL, {"action": "member.*"})) == [events["removed"].pk, events["role"].pk]
    assert _ids(client.get(URL, {"action": "member.role_changed,webhook.created"})) == [
        events["webhook"].pk,
        events["role"].pk,
    ]
    assert _ids(client.get(URL, {"action": "billing.*"})) == []


@pytest.mark.parametrize("action", ["member.promoted", "member", "*", "member.*,nope", "%"])
def test_an_unknown_action_is_422(world, api_as, events, action):
    error = _error(api_as(world.admin_a).get(URL, {"action": action}), 422)
    assert error["code"] == "VALIDATION_ERROR"
    assert "action" in str(error)


def test_filter_by_target_type_or_id(world, api_as, events):
    client = api_as(world.admin_a)
    assert _ids(client.get(URL, {"target": "webhook"})) == [events["webhook"].pk]
    assert _ids(client.get(URL, {"target": str(world.member_a.pk)})) == [
        events["removed"].pk,
        events["role"].pk,
    ]
    assert _ids(client.get(URL, {"target": "member"})) == [events["removed"].pk, events["role"].pk]
    # Org B's target, asked for by id from org A: nothing.
    assert _ids(client.get(URL, {"target": str(world.member_b.pk)})) == []


def test_filter_by_dates(world, api_as):
    a = world.org_a.pk
    january = _insert_at("2025-01-10T12:00:00Z", a, "credits.granted", "january")
    february = _insert_at("2025-02-01T00:00:00Z", a, "credits.granted", "february")
    march = _insert_at("2025-03-31T23:59:59Z", a, "credits.granted", "march")
    _insert_at("2025-02-15T00:00:00Z", world.org_b.pk, "credits.granted", "theirs")
    client = api_as(world.admin_a)
    assert _ids(client.get(URL, {"from": "2025-01-01", "to": "2025-12-31"})) == [march, february, january]
    assert _ids(client.get(URL, {"from": "2025-02-01", "to": "2025-03-31"})) == [march, february]
    assert _ids(client.get(URL, {"from": "2025-01-11", "to": "2025-02-01"})) == [february]
    assert _ids(client.get(URL, {"to": "2025-01-10"})) == [january]
    assert _ids(client.get(URL, {"from": "2025-02-01T00:00:01Z", "to": "2025-04-01"})) == [march]


@pytest.mark.parametrize(
    "query",
    [
        {"from": "yesterday"},
        {"to": "2025-13-01"},
        {"from": "2025-02-30"},
        {"from": "2025-03-01", "to": "2025-02-01"},
    ],
)
def test_invalid_or_reversed_dates_are_422(world, api_as, query):
    error = _error(api_as(world.admin_a).get(URL, query), 422)
    assert error["code"] == "VALIDATION_ERROR"


def test_a_member_is_refused(world, api_as, events):
    assert api_as(world.member_a).get(URL).status_code == 403
    assert api_as(world.member_a).get(EXPORT).status_code == 403


def test_an_api_key_is_refused_even_with_every_scope(world, events):
    _key, secret = keys.api_key_create(
        org=world.org_a, created_by=world.admin_a, name="everything", scopes=sorted(SCOPES)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for path in (URL, EXPORT):
        error = _error(client.get(path), 403)
        assert error["details"]["reason"] == "person_only"
    # The key itself works where its scopes allow.
    assert client.get("/api/v1/webhooks").status_code == 200


def test_an_anonymous_caller_is_refused(world, events):
    assert APIClient().get(URL).status_code == 401


# --- CSV -------------------------------------------------------------------------------------------


def _csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200, getattr(response, "content", b"")
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_export_has_a_header_and_the_same_rows_as_the_list(world, api_as, events):
    response = api_as(world.admin_a).get(EXPORT)
    assert response["Content-Disposition"] == 'attachment; filename="audit-log-org-a.csv"'
    header, *rows = _csv_rows(response)
    assert tuple(header) == HEADER
    assert [dict(zip(header, row, strict=True))["action"] for row in rows] == [
        "member.removed",
        "webhook.created",
        "member.role_changed",
    ]
    removed = dict(zip(header, rows[0], strict=True))
    event = events["removed"]
    assert removed == {
        "created_at": event.created_at.isoformat(),
        "actor_kind": "user",
        "actor": "user:admin@org-a.test",
        "action": "member.removed",
        "target_type": "member",
        "target_id": str(world.member_a.pk),
        "target": "member@org-a.test",
        "changes": '{"after": {}, "before": {"role": "admin"}}',
        "ip": "127.0.0.1",
        "user_agent": "pytest agent",
        "request_id": "",
    }


def test_the_export_takes_the_same_filters(world, api_as, events):
    header, *rows = _csv_rows(api_as(world.admin_a).get(EXPORT, {"action": "webhook.*"}))
    assert [row[header.index("action")] for row in rows] == ["webhook.created"]
    assert api_as(world.admin_a).get(EXPORT, {"from": "2025-03-01", "to": "2025-02-01"}).status_code == 422


def test_the_export_stops_at_the_maximum(world, api_as, events, settings):
    settings.AUDIT_LOG_EXPORT_MAX_ROWS = 2
    _header, *rows = _csv_rows(api_as(world.admin_a).get(EXPORT))
    assert len(rows) == 2


def test_a_label_that_looks_like_a_formula_is_exported_as_text(world, api_as):
    key, _secret = keys.api_key_create(
        org=world.org_a, created_by=world.admin_a, name="=HYPERLINK(1)", scopes=["jobs:read"]
    )
    header, *rows = _csv_rows(api_as(world.admin_a).get(EXPORT, {"action": "api_key.created"}))
    (row,) = rows
    assert row[header.index("target")] == f"'=HYPERLINK(1) ({key.prefix})"
    # The JSON of the changes starts with "{": left as it is.
    assert row[header.index("changes")].startswith('{"after": {"expires_at": null, "name": "=HYPERLINK(1)"')
    # The API shows the label as recorded; only the spreadsheet copy is escaped.
    (event,) = api_as(world.admin_a).get(URL, {"action": "api_key.created"}).json()["data"]
    assert event["target"]["label"] == f"=HYPERLINK(1) ({key.prefix})"


# --- The page ------------------------------------------------------------------------------------


def _page_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_shows_the_organisations_events_with_filters_and_a_csv_link(world, events):
    client = _page_client(world.admin_a)  # a sign-in: recorded too
    page = client.get("/audit-log")
    assert page.status_code == 200
    html = page.content.decode()
    assert re.findall(r'data-audit-event="([^"]+)"', html) == [
        "auth.signed_in",
        "member.removed",
        "webhook.created",
        "member.role_changed",
    ]
    assert "user:admin@org-a.test" in html
    assert "key:ci" in html
    assert "https://b.example/in" not in html
    assert "ghost@nowhere.example" not in html
    assert 'name="actor"' in html and 'name="action"' in html and 'name="target"' in html
    assert re.search(r'<a href="/audit-log.csv"[^>]*data-audit-log-csv', html)

    filtered = client.get("/audit-log", {"action": "member.*", "actor": "user:admin@org-a.test"})
    html = filtered.content.decode()
    assert re.findall(r'data-audit-event="([^"]+)"', html) == ["member.removed", "member.role_changed"]
    link = re.search(r'<a href="([^"]+)"[^>]*data-audit-log-csv', html).group(1)
    assert link == "/audit-log.csv?actor=user%3Aadmin%40org-a.test&amp;action=member.%2A"


def test_the_page_filters_by_dates_and_ignores_a_bad_one_with_a_message(world, events):
    client = _page_client(world.admin_a)
    today = timezone.now().date()

    def shown(**dates) -> list[str]:
        html = client.get("/audit-log", {"action": "member.*", **dates}).content.decode()
        return re.findall(r'data-audit-event="([^"]+)"', html)

    members = ["member.removed", "member.role_changed"]
    assert shown(**{"from": today.isoformat(), "to": today.isoformat()}) == members
    assert shown(**{"to": (today - timedelta(days=1)).isoformat()}) == []
    assert shown(**{"from": (today + timedelta(days=1)).isoformat()}) == []
    page = client.get("/audit-log", {"action": "member.*", "from": "yesterday"})
    assert "must be a date" in page.content.decode()
    assert re.findall(r'data-audit-event="([^"]+)"', page.content.decode()) == members
    earlier = (today - timedelta(days=2)).isoformat()
    reversed_range = client.get("/audit-log", {"from": today.isoformat(), "to": earlier})
    assert "is after" in reversed_range.content.decode()


def test_a_member_cannot_open_the_page_or_its_csv(world, events):
    client = _page_client(world.member_a)
    assert client.get("/audit-log").status_code == 403
    assert client.get("/audit-log.csv").status_code == 403


def test_the_pages_csv_streams_with_its_filters(world, events):
    response = _page_client(world.admin_a).get("/audit-log.csv", {"action": "member.*"})
    header, *rows = _csv_rows(response)
    assert tuple(header) == HEADER
    assert [row[header.index("action")] for row in rows] == ["member.removed", "member.role_changed"]
    assert response["Content-Disposition"] == 'attachment; filename="audit-log-org-a.csv"'


# --- The operators' admin ---------------------------------------------------------------------------


@pytest.fixture
def operator_client(world):
    operator = User.objects.create_superuser(
        f"root-{uuid.uuid4().hex[:8]}@nexus.test", "operator-password-123"
    )
    assert operator.organisation_id is None
    client = Client()
    client.force_login(operator)
    return client


CHANGELIST = "/admin/auditlog/auditevent/"


def test_operators_read_every_organisations_events(operator_client, world, events):
    response = operator_client.get(CHANGELIST)
    assert response.status_code == 200
    shown = {event.pk for event in response.context["cl"].result_list}
    assert {e.pk for e in events.values()} <= shown
    assert {e.organisation_id for e in response.context["cl"].result_list} >= {
        world.org_a.pk,
        world.org_b.pk,
        None,
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("member.removed", {"removed", "theirs"}),
        ("user:admin@org-b.test", {"theirs", "theirs_webhook"}),
        ("key:ci", {"webhook"}),
    ],
)
def test_operators_search_by_actor_and_action(operator_client, events, query, expected):
    response = operator_client.get(CHANGELIST, {"q": query})
    assert response.status_code == 200
    shown = {event.pk for event in response.context["cl"].result_list}
    assert shown == {events[name].pk for name in expected}


def test_operators_search_by_organisation(operator_client, world, events):
    response = operator_client.get(CHANGELIST, {"q": str(world.org_b.pk)})
    assert response.status_code == 200
    shown = {event.pk for event in response.context["cl"].result_list}
    assert shown == {events["theirs"].pk, events["theirs_webhook"].pk}


def test_operators_cannot_add_change_or_delete_an_event(operator_client, events):
    event = events["role"]
    assert operator_client.get(f"{CHANGELIST}add/").status_code == 403
    assert operator_client.post(f"{CHANGELIST}add/", {"action": "member.joined"}).status_code == 403
    # The event's page is read-only: it shows, but a post changes nothing.
    view = operator_client.get(f"{CHANGELIST}{event.pk}/change/")
    assert view.status_code == 200
    assert view.context["has_change_permission"] is False
    assert view.context["has_delete_permission"] is False
    assert operator_client.post(f"{CHANGELIST}{event.pk}/change/", {"action": "x"}).status_code == 403
    assert operator_client.get(f"{CHANGELIST}{event.pk}/delete/").status_code == 403
    assert operator_client.post(f"{CHANGELIST}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    changelist = operator_client.get(CHANGELIST)
    action_form = changelist.context["action_form"]
    choices = [value for value, _label in action_form.fields["action"].choices] if action_form else []
    assert "delete_selected" not in choices
    bulk = operator_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302, 403)
    assert AuditEvent.objects.get(pk=event.pk).action == "member.role_changed"


def test_the_page_ignores_control_characters_in_its_filters(world, events):
    client = _page_client(world.admin_a)
    for name in ("actor", "target"):
        response = client.get("/audit-log", {name: "user:\x00admin@org-a.test"})
        assert response.status_code == 200
