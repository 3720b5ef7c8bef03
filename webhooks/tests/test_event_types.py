"""The published event catalogue: GET /api/v{1,2}/webhooks/event-types and the "Event
types" section of the webhooks page. The same for every organisation, readable by any
signed-in member."""

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from webhooks.events import EVENT_TYPES

pytestmark = pytest.mark.django_db


def test_event_types_need_a_caller(db):
    for version in ("v1", "v2"):
        response = APIClient().get(f"/api/{version}/webhooks/event-types")
        assert response.status_code == 401
        body = response.json()
        assert body["error"]["code"] == "UNAUTHORIZED"
        assert body["meta"]["request_id"]
        assert "data" not in body


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_member_reads_the_whole_catalogue_in_the_envelope(world, api_as, version):
    response = api_as(world.member_a).get(f"/api/{version}/webhooks/event-types")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "meta"}
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    assert "page" not in body["meta"]  # a complete list, not a page of one
    assert [e["name"] for e in body["data"]] == list(EVENT_TYPES)
    for entry in body["data"]:
        event = EVENT_TYPES[entry["name"]]
        assert entry == {
            "name": event.name,
            "description": event.description,
            "version": event.version,
            "subscribable": event.subscribable,
            "schema": event.schema,
            "example": event.example,
        }
    assert [e["subscribable"] for e in body["data"]] == [True, True, True, True, True, False]


def test_the_catalogue_is_the_same_for_every_organisation(world, api_as):
    seen = [
        api_as(user).get("/api/v1/webhooks/event-types").json()["data"]
        for user in (world.admin_a, world.member_a, world.member_b)
    ]
    assert seen[0] == seen[1] == seen[2]
    assert len(seen[0]) == len(EVENT_TYPES)


def test_the_catalogue_is_read_only(world, api_as):
    client = api_as(world.admin_a)
    for method in ("post", "patch", "put", "delete"):
        response = getattr(client, method)("/api/v1/webhooks/event-types", {}, format="json")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_the_event_types_endpoint_is_documented_in_both_versions(client):
    for path, prefix in (("/api/schema/?format=json", "/api/v1"), ("/api/schema/v2/?format=json", "/api/v2")):
        document = client.get(path).json()
        operation = document["paths"][f"{prefix}/webhooks/event-types"]["get"]
        data = operation["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]
        assert data["items"] == {"$ref": "#/components/schemas/EventTypeOutput"}
        assert operation["x-complete-list"] is True
        fields = document["components"]["schemas"]["EventTypeOutput"]["properties"]
        assert set(fields) == {"name", "description", "version", "subscribable", "schema", "example"}


# --- The webhooks page ---------------------------------------------------------------------------


def _page_as(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/webhooks")
    assert response.status_code == 200
    return response.content.decode()


def test_webhooks_page_lists_each_event_type_with_description_and_example(world):
    page = _page_as(world.member_a)
    section = page.split("data-event-types>")[1].split("</section>")[0]
    assert section.count("<article data-event-type=") == len(EVENT_TYPES)
    for name, event in EVENT_TYPES.items():
        entry = section.split(f'<article data-event-type="{name}">')[1].split("</article>")[0]
        assert f"<code>{name}</code>" in entry
        assert f"version {event.version}" in entry
        assert event.description.replace("'", "&#x27;") in entry
        shown = entry.split("<pre><code>")[1].split("</code></pre>")[0]
        assert json.loads(shown.replace("&quot;", '"')) == event.example
    assert "sent only on request" in section.split('data-event-type="webhook.test"')[1]
    assert "sent only on request" not in section.split('data-event-type="webhook.test"')[0]


def test_webhooks_page_shows_admins_the_same_catalogue(world):
    admin_page, member_page = _page_as(world.admin_a), _page_as(world.member_a)
    section = lambda page: page.split("data-event-types>")[1].split("</section>")[0]  # noqa: E731
    assert section(admin_page) == section(member_page)
