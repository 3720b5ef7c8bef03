"""Every rule a source's configuration is saved under, one case each, with the exact
refusal (message and details) a client sees; and the typed view a run reads."""

import pytest
from django_tenants.utils import tenant_context

from etl.models import DataSource
from etl.owned import NO_SUCH_FILE
from etl.services import etl_source_create, etl_source_update
from etl.tests.conftest import API_MAPPING, CSV_MAPPING
from nexus.api.errors import ValidationFailed

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/items"
KEY_FORMAT = (
    "config.api_key_name is the short name of a server-held key: capital letters and "
    "digits, words joined by single underscores, at most 64 characters (e.g. WEATHER)."
)
KEY_ENV = (
    "config.api_key_env is no longer accepted; name a server-held key of this "
    "organisation with config.api_key_name."
)
PAGE_SIZE = "config.page_size must be a whole number from 1 to 1000."
MAX_PAGES = "config.max_pages must be a whole number from 1 to 10000."


def _refusal(message: str, **details) -> tuple[str, dict]:
    return message, {"fields": {"config": [message]}, **details}


def _key_variable(org, name: str) -> str:
    return f"ETL_SOURCE_KEY__{org.schema_name.upper()}__{name}"


# Each rule, in the order the rules are checked (the first broken one is reported).
REFUSED = [
    ("api", ["not", "an", "object"], _refusal("config must be an object.")),
    ("csv", "path=a.csv", _refusal("config must be an object.")),
    ("api", {}, _refusal("An API source needs config.url.")),
    ("api", {"url": ""}, _refusal("An API source needs config.url.")),
    ("api", {"url": None, "page_size": 0}, _refusal("An API source needs config.url.")),
    (
        "api",
        {"url": URL, "path": "articles.csv"},
        _refusal("An API source reads its URL; config.path is for CSV and RSS sources."),
    ),
    ("csv", {"url": URL, "path": "articles.csv"}, _refusal("Give at most one of config.path or config.url.")),
    ("rss", {"url": URL, "path": "feed.xml"}, _refusal("Give at most one of config.path or config.url.")),
    (
        "csv",
        {"url": "ftp://x/a.csv"},
        _refusal("config.url: The URL must use http or https.", reason="unsafe_url"),
    ),
    ("api", {"url": "https://"}, _refusal("config.url: The URL has no host.", reason="unsafe_url")),
    (
        "api",
        {"url": "https://user:pw@example.com/"},
        _refusal("config.url: The URL must not contain credentials.", reason="unsafe_url"),
    ),
    ("api", {"url": 12}, _refusal("config.url: The URL must use http or https.", reason="unsafe_url")),
    (
        "api",
        {"url": "ftp://x", "page_size": 0},
        _refusal("config.url: The URL must use http or https.", reason="unsafe_url"),
    ),
    ("csv", {"path": "/etc/passwd"}, _refusal(NO_SUCH_FILE)),
    ("csv", {"path": "../org_b/articles.csv"}, _refusal(NO_SUCH_FILE)),
    ("rss", {"path": "missing.xml"}, _refusal(NO_SUCH_FILE)),
    ("csv", {"path": 5}, _refusal(NO_SUCH_FILE)),
    ("api", {"url": URL, "path": 0}, _refusal(NO_SUCH_FILE)),
    ("csv", {"path": "/etc/passwd", "api_key": "x"}, _refusal(NO_SUCH_FILE)),
    ("api", {"url": URL, "api_key": "secret"}, _refusal("Send the API key as api_key, not inside config.")),
    ("csv", {"api_key": None}, _refusal("Send the API key as api_key, not inside config.")),
    (
        "api",
        {"url": URL, "api_key": "x", "api_key_env": "SECRET_KEY"},
        _refusal("Send the API key as api_key, not inside config."),
    ),
    ("api", {"url": URL, "api_key_env": "SECRET_KEY"}, _refusal(KEY_ENV)),
    ("rss", {"api_key_env": ""}, _refusal(KEY_ENV)),
    ("api", {"url": URL, "api_key_env": "X", "api_key_name": "items"}, _refusal(KEY_ENV)),
    ("api", {"url": URL, "api_key_name": "items"}, _refusal(KEY_FORMAT)),
    ("api", {"url": URL, "api_key_name": "ORG_B__ITEMS"}, _refusal(KEY_FORMAT)),
    ("api", {"url": URL, "api_key_name": "A" * 65}, _refusal(KEY_FORMAT)),
    ("api", {"url": URL, "api_key_name": None}, _refusal(KEY_FORMAT)),
    ("csv", {"api_key_name": ["ITEMS"]}, _refusal(KEY_FORMAT)),
    (
        "api",
        {"url": URL, "api_key_name": "NOPE"},
        _refusal(
            "config.api_key_name: no server-held key of this organisation has that name.",
            reason="unknown_key_name",
        ),
    ),
    (
        "api",
        {"url": URL, "api_key_name": "NOPE", "page_size": 0},
        _refusal(
            "config.api_key_name: no server-held key of this organisation has that name.",
            reason="unknown_key_name",
        ),
    ),
    ("api", {"url": URL, "page_size": 0}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "page_size": 1001}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "page_size": -1}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "page_size": "many"}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "page_size": 5.0}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "page_size": True}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "page_size": None}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "page_size": 0, "max_pages": 0}, _refusal(PAGE_SIZE)),
    ("api", {"url": URL, "max_pages": 0}, _refusal(MAX_PAGES)),
    ("api", {"url": URL, "max_pages": 10_001}, _refusal(MAX_PAGES)),
    ("api", {"url": URL, "max_pages": "all"}, _refusal(MAX_PAGES)),
    ("api", {"url": URL, "max_pages": True}, _refusal(MAX_PAGES)),
    ("api", {"url": URL, "max_pages": None}, _refusal(MAX_PAGES)),
    ("api", {"url": URL, "max_pages": [3]}, _refusal(MAX_PAGES)),
]


@pytest.mark.parametrize("kind,config,expected", REFUSED)
def test_each_config_rule_refuses_with_its_exact_message_and_nothing_is_saved(
    world, files, monkeypatch, kind, config, expected
):
    monkeypatch.setenv(_key_variable(world.org_b, "NOPE"), "org-b-key")  # another's: still unknown
    with tenant_context(world.org_a):
        with pytest.raises(ValidationFailed) as refused:
            etl_source_create(
                name="S",
                kind=kind,
                config=config,
                field_mapping=API_MAPPING if kind == "api" else CSV_MAPPING,
            )
        assert (refused.value.message, refused.value.details) == expected
        assert refused.value.status_code == 422
        assert refused.value.code == "VALIDATION_ERROR"
        assert not DataSource.objects.exists()


ACCEPTED = [
    ("api", {"url": URL}),
    (
        "api",
        {"url": URL, "path": ""},
    ),
    ("api", {"url": URL, "path": None}),
    ("api", {"url": URL, "page_size": "50", "max_pages": "7"}),
    ("api", {"url": URL, "page_size": 1000, "max_pages": 10_000}),
    ("api", {"url": URL, "page_size": 1, "max_pages": 1, "records_path": "", "page_param": "p"}),
    ("api", {"url": URL, "anything": {"else": 1}, "api_key_header": "X-Key"}),
    ("csv", {}),
    ("csv", {"path": "articles.csv", "url": ""}),
    ("csv", {"url": URL, "path": None, "delimiter": ";", "encoding": "latin-1"}),
    ("csv", {"url": 0}),
    ("csv", {"page_size": 0, "max_pages": "all"}),  # paging is the API's; other kinds keep it as is
    ("rss", {"path": "feed.xml"}),
    ("rss", {"unknown": True}),
]


@pytest.mark.parametrize("kind,config", ACCEPTED)
def test_accepted_configs_are_stored_exactly_as_sent(world, files, kind, config):
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="S", kind=kind, config=config, field_mapping=API_MAPPING if kind == "api" else CSV_MAPPING
        )
        assert DataSource.objects.get(pk=source.pk).config == config


def test_a_named_server_held_key_of_the_organisation_is_accepted_for_any_kind(world, files, monkeypatch):
    monkeypatch.setenv(_key_variable(world.org_a, "ITEMS"), "k")
    with tenant_context(world.org_a):
        source = etl_source_create(
            name="S",
            kind="csv",
            config={"path": "articles.csv", "api_key_name": "ITEMS"},
            field_mapping=CSV_MAPPING,
        )
        assert source.config["api_key_name"] == "ITEMS"


def test_a_patch_of_the_config_is_held_to_the_same_rules(world, files):
    with tenant_context(world.org_a):
        source = etl_source_create(name="S", kind="api", config={"url": URL}, field_mapping=API_MAPPING)
        with pytest.raises(ValidationFailed) as refused:
            etl_source_update(source=source, config={"url": URL, "max_pages": 0})
        assert refused.value.details == {"fields": {"config": [MAX_PAGES]}}
        assert DataSource.objects.get(pk=source.pk).config == {"url": URL}


def test_the_max_pages_bound_follows_the_setting(world, files, settings):
    settings.ETL_MAX_PAGES = 20
    with tenant_context(world.org_a):
        with pytest.raises(ValidationFailed) as refused:
            etl_source_create(
                name="S", kind="api", config={"url": URL, "max_pages": 21}, field_mapping=API_MAPPING
            )
        assert refused.value.message == "config.max_pages must be a whole number from 1 to 20."
        etl_source_create(
            name="S", kind="api", config={"url": URL, "max_pages": 20}, field_mapping=API_MAPPING
        )


def test_an_api_source_without_a_url_is_422_through_the_api(world, api_as):
    body = {"name": "x", "kind": "api", "config": {"page_size": 10}, "field_mapping": API_MAPPING}
    response = api_as(world.admin_a).post("/api/v1/etl/sources", body, format="json")
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "An API source needs config.url.",
        "details": {"fields": {"config": ["An API source needs config.url."]}},
    }
