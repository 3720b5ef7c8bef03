import shutil

import pytest
from django_tenants.utils import tenant_context

from etl.mock_api import MockApi
from etl.samples import ARTICLES_CSV_MAPPING, FEED_MAPPING, MOCK_API_MAPPING, SAMPLE_DIR

SAMPLE = SAMPLE_DIR
CSV_MAPPING = ARTICLES_CSV_MAPPING
API_MAPPING = MOCK_API_MAPPING
RSS_MAPPING = FEED_MAPPING


@pytest.fixture
def files(tmp_path, settings, world):
    """The data directory of each shared organisation (`<root>/<org schema>/`, the only place
    its sources may name by path), both holding copies of the samples; org A's is returned.
    Uploaded files go to a MEDIA_ROOT of this test's own."""
    root = tmp_path / "etl-files"
    settings.ETL_LOCAL_ROOTS = [str(root)]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    for org in (world.org_a, world.org_b):
        directory = root / org.schema_name
        directory.mkdir(parents=True)
        shutil.copy(SAMPLE / "articles.csv", directory / "articles.csv")
        shutil.copy(SAMPLE / "feed.xml", directory / "feed.xml")
    return root / world.org_a.schema_name


@pytest.fixture
def org_a(world):
    with tenant_context(world.org_a):
        yield world.org_a


@pytest.fixture
def mock_api():
    with MockApi(api_key="test-key", items=250) as api:
        yield api
