"""The sample data shipped in etl/sample_data/ and the field mappings that read it; used by
the demo content, the tests and the benchmark. Samples reach an organisation the way its
own files do: uploaded through the upload service, never named by a server path."""

from __future__ import annotations

from pathlib import Path

from django.core.files import File

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


def sample_source_create(*, name: str, kind: str, sample: str, field_mapping: dict, **options):
    """A CSV or RSS source of the current organisation holding the sample file `sample`
    (e.g. "articles.csv"), uploaded through the same service as the API's upload."""
    from etl.services import etl_source_create, etl_source_file_upload

    source = etl_source_create(name=name, kind=kind, config={}, field_mapping=field_mapping, **options)
    with (SAMPLE_DIR / sample).open("rb") as handle:
        return etl_source_file_upload(source=source, file=File(handle, name=sample))
