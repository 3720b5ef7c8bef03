"""The file an audit is created from, as the request streams it in: its bytes counted
against AUDIT_MAX_UPLOAD_BYTES while they arrive (never after), digested for the
Idempotency-Key fingerprint on the way, and its problems (audits.inputs.InputError) turned
into the API's error codes.

The rule it keeps: nothing holds the whole upload. Django spools a large file to a
temporary file; audits.inputs reads it back an item at a time.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.uploadhandler import (
    FileUploadHandler,
    MemoryFileUploadHandler,
    TemporaryFileUploadHandler,
)

from audits.inputs import InputError, TooManyItems, parse_file
from nexus.api.errors import PayloadTooLarge, ValidationFailed

# What a multipart body may add around the file (boundaries, part headers, the criteria and
# options fields): a claimed length beyond the limit plus this is refused before a byte is read.
FORM_FRAMING_ALLOWANCE = 64 * 1024
# The tweets of an archive's zip may expand to this many times the upload limit: X's
# tweets.js compresses about tenfold, a zip bomb a thousandfold.
EXPANSION_FACTOR = 10
_NAME_CHARS = 255


class InvalidFile(ValidationFailed):
    """The upload cannot be read as items; details name the line or item at fault."""

    code = "INVALID_FILE"
    default_message = "The file cannot be read as items to audit."


class TooManyItemsError(ValidationFailed):
    """More items than one audit takes; details {count, limit}."""

    code = "TOO_MANY_ITEMS"
    default_message = "The input holds more items than one audit takes."


def input_refused(exc: InputError) -> ValidationFailed:
    """The API's error for an input that cannot be audited (422 either way)."""
    if isinstance(exc, TooManyItems):
        return TooManyItemsError(exc.message, details=exc.details)
    return InvalidFile(exc.message, details=exc.details)


def too_large() -> PayloadTooLarge:
    limit = settings.AUDIT_MAX_UPLOAD_BYTES
    return PayloadTooLarge(
        f"The file is larger than the upload limit of {limit} bytes.", details={"limit_bytes": limit}
    )


def max_body_bytes() -> int:
    return settings.AUDIT_MAX_UPLOAD_BYTES + FORM_FRAMING_ALLOWANCE


def parse_upload(upload, *, skip_retweets: bool, skip_replies: bool):
    """The items of an uploaded file (X archive, its zip, or CSV) as a stream parsed while the
    audit is created, within the audit limits. InputError for a zip whose structure is
    refused before any item is read; item errors come while the stream is read."""
    return parse_file(
        upload,
        max_items=settings.AUDIT_MAX_ITEMS,
        max_item_chars=settings.AUDIT_MAX_ITEM_CHARS,
        max_uncompressed_bytes=max_uncompressed_bytes(),
        skip_retweets=skip_retweets,
        skip_replies=skip_replies,
    )


def max_uncompressed_bytes() -> int:
    return settings.AUDIT_MAX_UPLOAD_BYTES * EXPANSION_FACTOR


class CountingUploadHandler(FileUploadHandler):
    """First of the request's upload handlers: counts the bytes of every file part as they
    arrive and stops the request once they pass AUDIT_MAX_UPLOAD_BYTES (the request's and
    the parts' Content-Length are claims; only the counted bytes decide), and digests each
    part for the idempotency fingerprint. The next handler builds the file."""

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = settings.AUDIT_MAX_UPLOAD_BYTES
        self.received = 0
        self.parts: list[tuple[str, str, str]] = []  # (field, file name, sha256)
        self._digest = hashlib.sha256()

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # An honest claim over the limit: refused without reading the body.
        if content_length > self.limit + FORM_FRAMING_ALLOWANCE:
            raise too_large()

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self._digest = hashlib.sha256()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            raise too_large()
        self._digest.update(raw_data)
        return raw_data

    def file_complete(self, file_size):
        self.parts.append((self.field_name, self.file_name or "", self._digest.hexdigest()))
        return None


def install_upload_handlers(request) -> None:
    """Put the counting handler in front of Django's own; before the body is first read."""
    request.upload_handlers = [
        CountingUploadHandler(request),
        MemoryFileUploadHandler(request),
        TemporaryFileUploadHandler(request),
    ]


def form_fingerprint_body(request) -> bytes:
    """What stands for a request's body in its Idempotency-Key fingerprint: a JSON body
    itself (small: the view bounds it), a multipart form as its fields and the digests of
    its files, computed as they streamed in (parsing the form here, through the counting
    handler, so its limit holds)."""
    django_request = request._request
    if not django_request.content_type.startswith("multipart/"):
        return django_request.body
    fields = sorted((name, values) for name, values in request.POST.lists())  # parses the form
    counter = next((h for h in django_request.upload_handlers if isinstance(h, CountingUploadHandler)), None)
    parts = sorted(counter.parts) if counter is not None else []
    return b"multipart:" + json.dumps({"fields": fields, "files": parts}, sort_keys=True).encode()


def input_name(name: str | None) -> str:
    """The uploaded file's name as it is shown: its base name, without control characters."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base[:_NAME_CHARS] or "upload"
