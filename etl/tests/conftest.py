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
