"""API keys of data sources: a server-held key is only ever the calling organisation's own
(named by the operator per organisation schema), and a stored key never follows a source to
another scheme, host or port."""

import pytest
from django_tenants.utils import tenant_context

from etl.mock_api import MockApi
from etl.models import DataSource
from etl.services import etl_run_source, etl_source_create
from etl.tests.conftest import API_MAPPING

pytestmark = pytest.mark.django_db


def _variable(org, name: str) -> str:
    return f"ETL_SOURCE_KEY__{org.schema_name.upper()}__{name}"


def _body(url: str, **config) -> dict:
    return {"name": "Items", "kind": "api", "config": {"url": url, **config}, "field_mapping": API_MAPPING}


def _error(response) -> dict:
    return response.json()["error"]


# --- Finding: server-held keys could be borrowed ---------------------------------------------


def test_an_organisation_uses_its_own_server_held_key_by_name(world, api_as, mock_api, monkeypatch):
    monkeypatch.setenv(_variable(world.org_a, "ITEMS"), "test-key")
    response = api_as(world.admin_a).post(
        "/api/v1/etl/sources", _body(mock_api.url, api_key_name="ITEMS"), format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["data"]["api_key_set"] is True
    with tenant_context(world.org_a):
        run = etl_run_source(source=DataSource.objects.get())
    assert run.status == "succeeded"
    assert run.inserted == 250
    assert {r["api_key"] for r in mock_api.requests} == {"test-key"}


def test_naming_another_organisations_key_looks_exactly_like_naming_none(
    world, api_as, mock_api, monkeypatch
):
    monkeypatch.setenv(_variable(world.org_b, "ITEMS"), "org-b-secret")
    client = api_as(world.admin_a)
    foreign = client.post("/api/v1/etl/sources", _body(mock_api.url, api_key_name="ITEMS"), format="json")
    missing = client.post("/api/v1/etl/sources", _body(mock_api.url, api_key_name="NOPE"), format="json")
    assert foreign.status_code == missing.status_code == 422
    assert _error(foreign) == _error(missing)
    assert _error(foreign)["message"] == (
        "config.api_key_name: no server-held key of this organisation has that name."
    )
    assert "org-b-secret" not in foreign.content.decode()
    with tenant_context(world.org_a):
        assert not DataSource.objects.exists()


@pytest.mark.parametrize(
    "config",
    [
        {"api_key_env": "ETL_SOURCE_KEY__ORG_B__ITEMS"},  # the old form, naming any variable
        {"api_key_env": "SECRET_KEY"},
        {"api_key_name": "ORG_B__ITEMS"},  # would spell a variable of schema ..._ORG_B
        {"api_key_name": "_ITEMS"},
        {"api_key_name": "items"},
        {"api_key_name": "A" * 65},
        {"api_key_name": ["ITEMS"]},
    ],
)
def test_key_names_that_could_reach_other_variables_are_refused(world, api_as, mock_api, monkeypatch, config):
    monkeypatch.setenv(_variable(world.org_b, "ITEMS"), "org-b-secret")
    response = api_as(world.admin_a).post("/api/v1/etl/sources", _body(mock_api.url, **config), format="json")
    assert response.status_code == 422
    assert _error(response)["code"] == "VALIDATION_ERROR"
    with tenant_context(world.org_a):
        assert not DataSource.objects.exists()


def test_a_stored_api_key_env_of_another_organisation_fails_closed(world, api_as, mock_api, monkeypatch):
    """A row saved before names were scoped: it named org B's variable. It must not run with it."""
    monkeypatch.setenv(_variable(world.org_b, "ITEMS"), "test-key")
    with tenant_context(world.org_a):
        source = DataSource.objects.create(
            name="Old",
            kind="api",
            config={"url": mock_api.url, "api_key_env": _variable(world.org_b, "ITEMS")},
            field_mapping=API_MAPPING,
            required_fields=["external_id", "title"],
        )
        run = etl_run_source(source=source)
    assert run.status == "failed"
    assert run.error == "The server-held API key named by this source is not available to this organisation."
    assert mock_api.requests == []  # nothing was sent anywhere
    shown = api_as(world.admin_a).get(f"/api/v1/etl/sources/{source.pk}").json()["data"]
    assert shown["api_key_set"] is False


def test_a_stored_api_key_env_of_the_organisation_itself_keeps_working(world, mock_api, monkeypatch):
    monkeypatch.setenv(_variable(world.org_a, "ITEMS"), "test-key")
    with tenant_context(world.org_a):
        source = DataSource.objects.create(
            name="Old",
            kind="api",
            config={"url": mock_api.url, "api_key_env": _variable(world.org_a, "ITEMS")},
            field_mapping=API_MAPPING,
            required_fields=["external_id", "title"],
        )
        assert etl_run_source(source=source).status == "succeeded"


def test_a_key_the_operator_removed_fails_the_run_with_a_clear_error(world, mock_api, monkeypatch):
    monkeypatch.setenv(_variable(world.org_a, "ITEMS"), "test-key")
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="Items",
            kind="api",
            config={"url": mock_api.url, "api_key_name": "ITEMS"},
            field_mapping=API_MAPPING,
        )
        monkeypatch.delenv(_variable(world.org_a, "ITEMS"))
        run = etl_run_source(source=source)
    assert run.status == "failed"
    assert run.error == "The server-held API key ITEMS is not available to this organisation."
    assert mock_api.requests == []


def test_a_run_in_another_organisation_never_resolves_the_name_to_its_key(world, mock_api, monkeypatch):
    """The same name resolves per running organisation: B's run of B's source gets B's key."""
    monkeypatch.setenv(_variable(world.org_a, "ITEMS"), "test-key")
    monkeypatch.setenv(_variable(world.org_b, "ITEMS"), "org-b-key")
    with tenant_context(world.org_b):
        source = etl_source_create(
            name="Items",
            kind="api",
            config={"url": mock_api.url, "api_key_name": "ITEMS"},
            field_mapping=API_MAPPING,
        )
        run = etl_run_source(source=source)
    assert run.status == "failed"
    assert "HTTP 401" in run.error
    assert {r["api_key"] for r in mock_api.requests} == {"org-b-key"}


def test_a_key_and_a_key_name_together_are_refused(world, api_as, mock_api, monkeypatch):
    monkeypatch.setenv(_variable(world.org_a, "ITEMS"), "test-key")
    body = {**_body(mock_api.url, api_key_name="ITEMS"), "api_key": "other"}
    response = api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json")
    assert response.status_code == 422
    assert "not both" in _error(response)["message"]


# --- Finding: a stored key followed the URL ----------------------------------------------------


@pytest.fixture
def other_server():
    """A second server: where an organisation might point a source that holds a key."""
    with MockApi(api_key="test-key", items=5) as api:
        yield api


def _moved(url: str, how: str, other_server) -> str:
    if how == "port":
        return other_server.url
    if how == "host":
        return url.replace("127.0.0.1", "localhost")
    return url.replace("http://", "https://")  # scheme


@pytest.mark.parametrize("how", ["port", "host", "scheme"])
def test_changing_scheme_host_or_port_clears_the_stored_key(world, api_as, mock_api, other_server, how):
    client = api_as(world.admin_a)
    created = client.post(
        "/api/v1/etl/sources", {**_body(mock_api.url), "api_key": "test-key"}, format="json"
    )
    source_id = created.json()["data"]["id"]
    assert created.json()["data"]["api_key_set"] is True
    patched = client.patch(
        f"/api/v1/etl/sources/{source_id}",
        {"config": {"url": _moved(mock_api.url, how, other_server)}},
        format="json",
    )
    assert patched.status_code == 200
    assert patched.json()["data"]["api_key_set"] is False
    with tenant_context(world.org_a):
        assert DataSource.objects.get(pk=source_id).api_key_encrypted == ""
    if how == "port":
        with tenant_context(world.org_a):
            run = etl_run_source(source=DataSource.objects.get(pk=source_id))
        assert run.status == "failed"
        assert "HTTP 401" in run.error
        assert [r["api_key"] for r in other_server.requests] == [None]  # the key never left


def test_a_server_held_key_name_is_dropped_when_the_port_changes(
    world, api_as, mock_api, other_server, monkeypatch
):
    monkeypatch.setenv(_variable(world.org_a, "ITEMS"), "test-key")
    client = api_as(world.admin_a)
    created = client.post("/api/v1/etl/sources", _body(mock_api.url, api_key_name="ITEMS"), format="json")
    source_id = created.json()["data"]["id"]
    patched = client.patch(
        f"/api/v1/etl/sources/{source_id}",
        {"config": {"url": other_server.url, "api_key_name": "ITEMS"}},
        format="json",
    )
    data = patched.json()["data"]
    assert data["api_key_set"] is False
    assert "api_key_name" not in data["config"]
    with tenant_context(world.org_a):
        etl_run_source(source=DataSource.objects.get(pk=source_id))
    assert [r["api_key"] for r in other_server.requests] == [None]
    # Named again, deliberately, for the new origin: then it is used there.
    again = client.patch(
        f"/api/v1/etl/sources/{source_id}",
        {"config": {"url": other_server.url, "api_key_name": "ITEMS"}},
        format="json",
    )
    assert again.json()["data"]["api_key_set"] is True


def test_a_key_given_with_the_new_url_is_kept(world, api_as, mock_api, other_server):
    client = api_as(world.admin_a)
    created = client.post("/api/v1/etl/sources", {**_body(mock_api.url), "api_key": "old-key"}, format="json")
    source_id = created.json()["data"]["id"]
    patched = client.patch(
        f"/api/v1/etl/sources/{source_id}",
        {"config": {"url": other_server.url}, "api_key": "test-key"},
        format="json",
    )
    assert patched.json()["data"]["api_key_set"] is True
    with tenant_context(world.org_a):
        assert etl_run_source(source=DataSource.objects.get(pk=source_id)).status == "succeeded"
    assert {r["api_key"] for r in other_server.requests} == {"test-key"}


def test_changing_only_the_path_keeps_the_key(world, api_as, mock_api):
    client = api_as(world.admin_a)
    created = client.post(
        "/api/v1/etl/sources", {**_body(mock_api.url), "api_key": "test-key"}, format="json"
    )
    source_id = created.json()["data"]["id"]
    patched = client.patch(
        f"/api/v1/etl/sources/{source_id}", {"config": {"url": mock_api.url + "/v2?page=1"}}, format="json"
    )
    assert patched.json()["data"]["api_key_set"] is True
