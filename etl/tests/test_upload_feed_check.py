"""An uploaded feed is checked as XML before feedparser reads it: feedparser falls back to a
lenient pure-Python parser on malformed documents (about 2 µs a byte, most of a minute for
a 20 MiB upload, inside a web request), and entity declarations are a way to make a small
document expand. Both are refused with a 422 naming what is wrong, and nothing is stored."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import tenant_context

from etl.models import DataSource
from etl.services import etl_source_create
from etl.tests.conftest import RSS_MAPPING

pytestmark = pytest.mark.django_db

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<rss version="2.0"><channel><title>&b;</title></channel></rss>"""


def _upload(client, source, data: bytes):
    upload = SimpleUploadedFile("feed.xml", data, content_type="application/rss+xml")
    return client.post(f"/api/v1/etl/sources/{source.pk}/file", {"file": upload}, format="multipart")


@pytest.fixture
def feed_source(world, files):
    with tenant_context(world.org_a):
        return etl_source_create(name="Feed", kind="rss", config={}, field_mapping=RSS_MAPPING)


def test_a_malformed_feed_is_refused_at_once_naming_the_line(world, api_as, feed_source):
    data = b'<?xml version="1.0"?>\n<rss version="2.0"><channel>\n' + b"<a " * 2_000_000
    started = time.monotonic()
    response = _upload(api_as(world.admin_a), feed_source, data)
    # A guard against the lenient parser's cost (most of a minute), not a speed target.
    assert time.monotonic() - started < 5.0
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"].startswith("The file is not well-formed XML (line 3)")
    with tenant_context(world.org_a):
        assert not DataSource.objects.get(pk=feed_source.pk).file_key


def test_a_feed_declaring_entities_is_refused(world, api_as, feed_source):
    response = _upload(api_as(world.admin_a), feed_source, LAUGHS)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "The feed declares entities or external references, which are not accepted."
    )
    with tenant_context(world.org_a):
        assert not DataSource.objects.get(pk=feed_source.pk).file_key
