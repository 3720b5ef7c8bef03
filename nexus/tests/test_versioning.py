"""v1 and v2 side by side; the v1 contract guarded by its committed snapshot."""

import copy
import json

import pytest

from nexus.management.commands.openapi_snapshot import current_document, snapshot_path
from nexus.openapi_compat import breaking_changes

pytestmark = pytest.mark.django_db

TEXT = "Versioned APIs keep old clients working while new ones get more."


def _v1_job_fields(snapshot: dict) -> set[str]:
    return set(snapshot["components"]["schemas"]["JobOutput"]["properties"])


def test_v1_summarize_keeps_its_exact_shape(funded, api_as):
    snapshot = json.loads(snapshot_path("v1").read_text())
    data = api_as(funded.member_a).post("/api/v1/summarize", {"text": TEXT}, format="json").json()["data"]
    assert set(data) == _v1_job_fields(snapshot)
    assert "usage" not in data


def test_v2_summarize_adds_usage_from_the_same_code_path(funded, api_as):
    client = api_as(funded.member_a)
    v2 = client.post("/api/v2/summarize", {"text": TEXT}, format="json")
    assert v2.status_code == 202
    data = v2.json()["data"]
    assert data["usage"] == {
        "credits_charged": 10,
        "cache_hit": False,
        "provider": "local",
        "model": "",
        "input_characters": len(TEXT),
    }
    v1_view = client.get(f"/api/v1/jobs/{data['id']}").json()["data"]
    assert "usage" not in v1_view
    assert v1_view["id"] == data["id"]
    assert client.get(f"/api/v2/jobs/{data['id']}").json()["data"]["usage"]["credits_charged"] == 10
    assert "usage" in client.get("/api/v2/jobs").json()["data"][0]


def test_every_v1_endpoint_exists_in_v2(client):
    v1 = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    v2 = json.loads(client.get("/api/schema/v2/", HTTP_ACCEPT="application/json").content)
    assert {p.replace("/api/v1/", "/api/v2/") for p in v1["paths"]} <= set(v2["paths"])
    assert "usage" in v2["components"]["schemas"]["JobOutputV2"]["properties"]
    assert "JobOutputV2" not in v1["components"]["schemas"]


def test_current_v1_document_does_not_break_the_snapshot():
    problems = breaking_changes(json.loads(snapshot_path("v1").read_text()), current_document("v1"))
    assert problems == [], "Breaking change to v1 (add it to v2 instead):\n" + "\n".join(problems)


# --- The compatibility check itself catches what it should ----------------------------------


@pytest.fixture(scope="module")
def snapshot():
    return json.loads(snapshot_path("v1").read_text())


def test_check_reports_a_removed_response_field(snapshot):
    changed = copy.deepcopy(snapshot)
    del changed["components"]["schemas"]["JobOutput"]["properties"]["cost"]
    problems = breaking_changes(snapshot, changed)
    assert any("POST /api/v1/summarize 202" in p and p.endswith(".cost: removed") for p in problems)


def test_check_reports_a_renamed_response_field(snapshot):
    changed = copy.deepcopy(snapshot)
    props = changed["components"]["schemas"]["MemberOutput"]["properties"]
    props["mail"] = props.pop("email")
    assert any(p.endswith(".email: removed") for p in breaking_changes(snapshot, changed))


def test_check_reports_a_changed_type(snapshot):
    changed = copy.deepcopy(snapshot)
    changed["components"]["schemas"]["JobOutput"]["properties"]["cost"] = {"type": "string"}
    assert any("cost: type changed from integer to string" in p for p in breaking_changes(snapshot, changed))


def test_check_reports_a_new_required_input(snapshot):
    changed = copy.deepcopy(snapshot)
    job_input = changed["components"]["schemas"]["JobInputRequest"]
    job_input["properties"]["language"] = {"type": "string"}
    job_input["required"] = [*job_input.get("required", []), "language"]
    assert any("language: new required field" in p for p in breaking_changes(snapshot, changed))


def test_check_reports_a_new_required_parameter_and_a_removed_operation(snapshot):
    changed = copy.deepcopy(snapshot)
    changed["paths"]["/api/v1/jobs"]["get"].setdefault("parameters", []).append(
        {"in": "query", "name": "tenant", "required": True, "schema": {"type": "string"}}
    )
    del changed["paths"]["/api/v1/org"]
    problems = breaking_changes(snapshot, changed)
    assert "GET /api/v1/jobs: new required query parameter 'tenant'" in problems
    assert "GET /api/v1/org: operation removed" in problems


def test_check_reports_a_changed_format(snapshot):
    changed = copy.deepcopy(snapshot)
    changed["components"]["schemas"]["JobOutput"]["properties"]["created_at"]["format"] = "date"
    assert any(
        p.endswith(".created_at: format changed from date-time to date")
        for p in breaking_changes(snapshot, changed)
    )


def test_check_reports_changed_and_removed_parameters(snapshot):
    changed = copy.deepcopy(snapshot)
    parameters = changed["paths"]["/api/v1/jobs"]["get"]["parameters"]
    next(p for p in parameters if p["name"] == "from")["schema"] = {"type": "integer"}
    parameters.remove(next(p for p in parameters if p["name"] == "sort"))
    problems = breaking_changes(snapshot, changed)
    # `from` was a date, a date-time or empty: none of those is an integer.
    assert "GET /api/v1/jobs: query parameter 'from': no longer accepts string" in problems
    assert "GET /api/v1/jobs: query parameter 'sort' removed" in problems


def test_check_reports_narrowed_and_removed_inputs_at_any_depth(snapshot):
    old = copy.deepcopy(snapshot)
    old["components"]["schemas"]["JobInputRequest"]["properties"]["options"] = {
        "type": "object",
        "properties": {"style": {"type": "string", "enum": ["short", "long"]}, "words": {"type": "integer"}},
    }
    new = copy.deepcopy(old)
    job_input = new["components"]["schemas"]["JobInputRequest"]
    job_input["properties"]["text"]["maxLength"] = 100
    options = job_input["properties"]["options"]
    options["properties"]["style"]["enum"] = ["short"]
    del options["properties"]["words"]
    options["required"] = ["style"]
    problems = [p for p in breaking_changes(old, new) if p.startswith("POST /api/v1/summarize body")]
    assert sorted(problems) == [
        "POST /api/v1/summarize body.options.style: new required field",
        "POST /api/v1/summarize body.options.style: no longer accepts ['long']",
        "POST /api/v1/summarize body.options.words: no longer accepted",
        "POST /api/v1/summarize body.text: maxLength narrowed from 20000 to 100",
    ]


def test_check_compares_each_form_of_a_union(snapshot):
    changed = copy.deepcopy(snapshot)
    parameters = changed["paths"]["/api/v1/jobs"]["get"]["parameters"]
    limit = next(p for p in parameters if p["name"] == "limit")
    limit["schema"]["anyOf"][0]["maximum"] = 50  # narrowed inside the union
    date_from = next(p for p in parameters if p["name"] == "from")
    date_from["schema"]["anyOf"] = date_from["schema"]["anyOf"][:2]  # empty no longer accepted
    problems = breaking_changes(snapshot, changed)
    assert "GET /api/v1/jobs: query parameter 'limit': maximum narrowed from 100 to 50" in problems
    # The empty form's closest remaining form is a date, which "" is not.
    assert "GET /api/v1/jobs: query parameter 'from': format changed from None to date" in problems


def test_check_reports_a_changed_pattern(snapshot):
    changed = copy.deepcopy(snapshot)
    parameters = changed["paths"]["/api/v1/jobs"]["get"]["parameters"]
    next(p for p in parameters if p["name"] == "status")["schema"]["pattern"] = "^(?:pending)?$"
    problems = breaking_changes(snapshot, changed)
    assert any(p.startswith("GET /api/v1/jobs: query parameter 'status': pattern changed") for p in problems)


def test_widening_a_union_is_not_breaking(snapshot):
    changed = copy.deepcopy(snapshot)
    parameters = changed["paths"]["/api/v1/jobs"]["get"]["parameters"]
    next(p for p in parameters if p["name"] == "limit")["schema"]["anyOf"][0]["maximum"] = 500
    assert breaking_changes(snapshot, changed) == []


def test_check_accepts_additions(snapshot):
    changed = copy.deepcopy(snapshot)
    changed["components"]["schemas"]["JobOutput"]["properties"]["priority"] = {"type": "integer"}
    changed["paths"]["/api/v1/new-thing"] = {"get": {"responses": {}}}
    job_input = changed["components"]["schemas"]["JobInputRequest"]
    job_input["properties"]["language"] = {"type": "string"}  # a new optional input
    changed["paths"]["/api/v1/jobs"]["get"]["parameters"].append(
        {"in": "query", "name": "tag", "required": False, "schema": {"type": "string"}}
    )
    assert breaking_changes(snapshot, changed) == []


# --- Deprecation headers ---------------------------------------------------------------------


def test_deprecated_version_carries_deprecation_and_sunset_headers(world, api_as, settings):
    settings.API_VERSION_LIFECYCLE = {
        "v1": {
            "deprecated": "2027-01-01",
            "sunset": "2027-07-01",
            "link": "https://nexus.example/docs/api-versioning",
        }
    }
    response = api_as(world.member_a).get("/api/v1/org")
    assert response["Deprecation"] == "@1798761600"
    assert response["Sunset"] == "Thu, 01 Jul 2027 00:00:00 GMT"
    assert response["Link"] == '<https://nexus.example/docs/api-versioning>; rel="deprecation"'
    assert "Deprecation" not in api_as(world.member_a).get("/api/v2/org")


def test_unknown_version_is_404(world, api_as):
    assert api_as(world.member_a).get("/api/v3/org").status_code == 404
