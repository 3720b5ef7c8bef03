"""Files organisations upload to their CSV and RSS sources: the size limit enforced while the
body streams in, the content checks made before anything is stored, and where a file lives.

The rule it keeps: an uploaded file is stored only under the organisation's own location
(`<org schema>/etl/<source id>/`), and only after its size and content were checked.
"""

from __future__ import annotations

import csv
import io
import mimetypes
import re
import unicodedata
from collections import Counter
from pathlib import PurePosixPath

import feedparser
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET
from defusedxml.ElementTree import ParseError
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from etl.models import SourceKind
from nexus.api.errors import PayloadTooLarge, ValidationFailed, field_error

# What a multipart body may add around the file itself (boundaries, part headers, a CSRF
# field): a claimed length beyond limit + this is refused before a byte is read.
FORM_FRAMING_ALLOWANCE = 64 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def too_large() -> PayloadTooLarge:
    limit = settings.ETL_MAX_UPLOAD_BYTES
    return PayloadTooLarge(
        f"The file is larger than the upload limit of {limit} bytes.", details={"limit_bytes": limit}
    )


class BoundedUploadHandler(FileUploadHandler):
    """First in the request's upload handlers: counts the bytes of every file part as they
    arrive and stops the request once they pass ETL_MAX_UPLOAD_BYTES. The request's and the
    parts' Content-Length are claims; only the counted bytes decide."""

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = settings.ETL_MAX_UPLOAD_BYTES
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # An honest claim over the limit: refuse without reading the body.
        if content_length > self.limit + FORM_FRAMING_ALLOWANCE:
            raise too_large()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            raise too_large()
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler (memory or temporary file) builds the file


def install_upload_handlers(request) -> None:
    """Put the bounded handler in front of Django's own; before the body is first read."""
    from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

    request.upload_handlers = [
        BoundedUploadHandler(request),
        MemoryFileUploadHandler(request),
        TemporaryFileUploadHandler(request),
    ]


def safe_file_name(name: str | None, kind: str) -> str:
    """The client's file name reduced to a plain base name (no directories, no dots in
    front, ASCII), so it can never steer where the file is stored."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    base = _SAFE_NAME.sub("-", base).strip(".-")[:100]
    # The content was checked as plain text: a name a storage would take for a compressed
    # file (.gz, .tgz, .br ...; mimetypes decides, as django-storages does) would be stored
    # with that Content-Encoding (GCS then serves it so) and could not be read back.
    while base and mimetypes.guess_type(base)[1] is not None:
        base = base[: -len(PurePosixPath(base).suffix)].rstrip(".-")
    return base or ("upload.csv" if kind == SourceKind.CSV else "upload.xml")


def storage_prefix(*, schema_name: str, source_id) -> str:
    return f"{schema_name}/etl/{source_id}/"


def _invalid_file(message: str, **details) -> ValidationFailed:
    return field_error("file", message, **details)


def check_csv(data: bytes, *, delimiter: str = ",") -> None:
    """A CSV the connector will read: UTF-8 (a BOM is fine), a header row of distinct,
    non-empty names, and rows the csv module parses. Errors name the line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _invalid_file(f"The file is not UTF-8 text (line {line}).", line=line) from None
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        raise field_error(
            "config",
            "config.delimiter must be one character.",
            message="config.delimiter must be one character; fix the source before uploading.",
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise _invalid_file("The CSV has no header row (line 1).", line=1)
        names = [cell.strip() for cell in header]
        if "" in names:
            raise _invalid_file("The CSV header row has an empty column name (line 1).", line=1)
        duplicates = sorted(name for name, seen in Counter(names).items() if seen > 1)
        if duplicates:
            raise _invalid_file(f"The CSV header row repeats the column names {duplicates} (line 1).", line=1)
        for _row in reader:
            pass
    except csv.Error as exc:
        line = reader.line_num
        raise _invalid_file(f"The CSV cannot be parsed (line {line}): {exc}.", line=line) from None


def _check_well_formed(data: bytes) -> None:
    """Uploaded feeds must be well-formed XML without entity declarations. feedparser falls
    back to a lenient pure-Python parser on anything else, at about 2 µs a byte: a 20 MiB
    malformed upload would hold the web worker for most of a minute. The C parser answers
    in a fraction of that, and refuses entity and external-reference tricks outright."""
    try:
        for _event, element in DefusedET.iterparse(io.BytesIO(data), events=("end",)):
            element.clear()  # nothing is kept: this only proves the document parses
    except ParseError as exc:
        line = exc.position[0]
        raise _invalid_file(f"The file is not well-formed XML (line {line}).", line=line) from None
    except DefusedXmlException:
        raise _invalid_file(
            "The feed declares entities or external references, which are not accepted."
        ) from None


def check_feed(data: bytes) -> None:
    """An RSS or Atom document feedparser reads without a fatal error: entries, or at
    least a feed element."""
    _check_well_formed(data)
    feed = feedparser.parse(data)
    if feed.bozo and not feed.entries:
        reason = getattr(feed.get("bozo_exception"), "getMessage", lambda: "")() or "not well-formed"
        raise _invalid_file(f"The file is not a readable RSS or Atom feed ({reason}).")
    # feedparser reads an HTML page or any XML leniently; only a recognised RSS/Atom root
    # element sets the version.
    if not feed.entries and not feed.get("version"):
        raise _invalid_file("The file is not an RSS or Atom feed: it has no feed element and no entries.")


def check_content(kind: str, data: bytes, *, delimiter: str = ",") -> None:
    if not data:
        raise _invalid_file("The file is empty.")
    if kind == SourceKind.CSV:
        check_csv(data, delimiter=delimiter)
    else:
        check_feed(data)
