"""Uploads against a real gunicorn server: the size limit holds for what actually arrives
on the socket, whatever the request claims, and nothing is stored."""

from __future__ import annotations

import contextlib
import socket
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django_tenants.utils import tenant_context

from etl.models import DataSource
from etl.services import etl_source_create
from etl.tests.conftest import CSV_MAPPING
from nexus.tests.browser.conftest import LiveServer
from tenants.tests.helpers import bearer_for

LIMIT = 100_000


@pytest.fixture
def upload_server(live_db):
    server = LiveServer({"ETL_MAX_UPLOAD_BYTES": str(LIMIT)})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def source(live_org):
    with tenant_context(live_org):
        return etl_source_create(name="Live", kind="csv", config={}, field_mapping=CSV_MAPPING)


def _stored(org) -> list[Path]:
    directory = Path(settings.MEDIA_ROOT) / org.schema_name
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


def _raw_post(server, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """Send a request as written (headers and body exactly as given, however they lie) and
    return what the server answers first."""
    host, port = server.url.removeprefix("http://").split(":")
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)  # the server may stop reading once it has answered
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _multipart(content: bytes) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", body


def test_an_upload_over_the_limit_is_413_from_the_real_server_and_nothing_is_stored(
    upload_server, live_org, source
):
    response = httpx.post(
        f"{upload_server.url}/api/v1/etl/sources/{source.pk}/file",
        headers={"Authorization": f"Bearer {bearer_for(live_org.admin)}"},
        files={"file": ("big.csv", b"id,title\n" + b"1,x\n" * (LIMIT // 4), "text/csv")},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert _stored(live_org) == []


def test_a_content_length_that_understates_the_body_never_lets_more_than_it_claims_in(
    upload_server, live_org, source
):
    content_type, body = _multipart(b"id,title\n" + b"1,x\n" * (LIMIT // 2))  # twice the limit
    answer = _raw_post(
        upload_server,
        f"/api/v1/etl/sources/{source.pk}/file",
        {
            "Authorization": f"Bearer {bearer_for(live_org.admin)}",
            "Content-Type": content_type,
            "Content-Length": "4000",  # a lie: the body is about 200 kB
            "Connection": "close",
        },
        body,
    )
    # WSGI hands the application only the claimed 4,000 bytes: the truncated part has no
    # closing boundary and is dropped, the rest of the body is never read as this upload.
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:300]
    assert b"Send the file as the multipart field" in answer
    assert _stored(live_org) == []
    with tenant_context(live_org):
        assert DataSource.objects.get(pk=source.pk).file_key == ""


def test_a_chunked_upload_without_content_length_over_the_limit_stores_nothing(
    upload_server, live_org, source
):
    content_type, body = _multipart(b"id,title\n" + b"1,x\n" * (LIMIT // 2))
    chunked = (
        b"".join(
            f"{len(body[i : i + 8192]):x}\r\n".encode() + body[i : i + 8192] + b"\r\n"
            for i in range(0, len(body), 8192)
        )
        + b"0\r\n\r\n"
    )
    answer = _raw_post(
        upload_server,
        f"/api/v1/etl/sources/{source.pk}/file",
        {
            "Authorization": f"Bearer {bearer_for(live_org.admin)}",
            "Content-Type": content_type,
            "Transfer-Encoding": "chunked",
            "Connection": "close",
        },
        chunked,
    )
    # Without a Content-Length, Django reads no body at all: no file arrives, none is stored.
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:300]
    assert b"Send the file as the multipart field" in answer
    assert _stored(live_org) == []
