import shutil
from pathlib import Path

import pytest
from django_tenants.utils import tenant_context

from etl.mock_api import MockApi

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

CSV_MAPPING = {
    "external_id": "Article ID",
    "title": "Headline",
    "body": "Body Text",
    "published_at": "Published On",
    "author": "Author Name",
    "tags": "Tags",
}
API_MAPPING = {
    "external_id": "id",
    "title": "title",
    "body": "content",
    "url": "link",
    "author": "author",
    "published_at": "updated_at",
    "tags": "labels",
}
RSS_MAPPING = {
    "external_id": "id",
    "title": "title",
    "body": "summary",
    "url": "link",
    "author": "author",
    "published_at": "published",
    "tags": "tags",
}


@pytest.fixture
def files(tmp_path, settings):
    """A directory data sources may read, with copies of the samples."""
    settings.ETL_LOCAL_ROOTS = [str(tmp_path), str(SAMPLE)]
    shutil.copy(SAMPLE / "articles.csv", tmp_path / "articles.csv")
    shutil.copy(SAMPLE / "feed.xml", tmp_path / "feed.xml")
    return tmp_path


@pytest.fixture
def org_a(world):
    with tenant_context(world.org_a):
        yield world.org_a


@pytest.fixture
def mock_api():
    with MockApi(api_key="test-key", items=250) as api:
        yield api
