"""Data sources for tests, made through etl.services (config rules, caps, keys and audit as
in the product). Call inside the organisation's schema. The per-file helpers of the ETL
tests are presets over these two."""

from __future__ import annotations

from typing import Any

from etl.models import DataSource
from etl.samples import ARTICLES_CSV_MAPPING, MOCK_API_MAPPING
from etl.services import etl_source_create


def api_source_create(
    *, url: str, name: str = "Items API", config: dict[str, Any] | None = None, **fields: Any
) -> DataSource:
    """An API source reading `url` (the mock API's item mapping unless `field_mapping` is
    given); `config` adds to the URL, `fields` are etl_source_create's other arguments."""
    fields.setdefault("field_mapping", MOCK_API_MAPPING)
    return etl_source_create(name=name, kind="api", config={"url": url, **(config or {})}, **fields)


def csv_source_create(
    *, name: str = "Articles", config: dict[str, Any] | None = None, **fields: Any
) -> DataSource:
    """A CSV source (the sample articles' mapping unless `field_mapping` is given); with no
    path or URL in `config`, it takes uploaded files."""
    fields.setdefault("field_mapping", ARTICLES_CSV_MAPPING)
    return etl_source_create(name=name, kind="csv", config=config or {}, **fields)
