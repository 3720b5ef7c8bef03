"""The sample data shipped in etl/sample_data/ and the field mappings that read it; used by
the demo content, the tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"

ARTICLES_CSV_MAPPING = {
    "external_id": "Article ID",
    "title": "Headline",
    "body": "Body Text",
    "published_at": "Published On",
    "author": "Author Name",
    "tags": "Tags",
}
FEED_MAPPING = {
    "external_id": "id",
    "title": "title",
    "body": "summary",
    "url": "link",
    "author": "author",
    "published_at": "published",
    "tags": "tags",
}
MOCK_API_MAPPING = {
    "external_id": "id",
    "title": "title",
    "body": "content",
    "url": "link",
    "author": "author",
    "published_at": "updated_at",
    "tags": "labels",
}


def sample_data_path(name: str) -> str:
    """A sample file's path relative to the project (inside ETL_LOCAL_ROOTS by default)."""
    return str(Path("etl") / "sample_data" / name)
