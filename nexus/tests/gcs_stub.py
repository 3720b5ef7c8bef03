"""A local stand-in for the Google Cloud Storage JSON API calls the file storage makes
(django-storages' GoogleCloudStorage over google-cloud-storage): object metadata, multipart
and resumable uploads, media downloads and deletes, with objects kept in memory. The real
client reaches it through STORAGE_EMULATOR_HOST (then with anonymous credentials).

Its buckets behave as the deployment's does, with uniform bucket-level access: an upload
that carries an object ACL (the `predefinedAcl` parameter or `acl` in the metadata) is
refused with GCS's own 400. A query parameter it does not know is refused too (501), so a
client that starts sending something new fails here instead of passing unnoticed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import google_crc32c

from nexus.tests.stub_server import StubRequest, StubServer

UNIFORM_ACCESS_REFUSAL = "Cannot insert legacy ACL for an object when uniform bucket-level access is enabled."

# The parameters each kind of call may carry; anything else is answered 501.
_UPLOAD_PARAMS = {"uploadType", "predefinedAcl", "userProject", "upload_id", "name"}
_OBJECT_PARAMS = {"alt", "projection", "generation", "userProject", "prettyPrint"}


@dataclass
class StoredObject:
    bucket: str
    name: str
    data: bytes
    content_type: str
    content_encoding: str | None
    generation: int
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Session:
    """A resumable upload between its start (POST) and its last chunk (PUT)."""

    bucket: str
    metadata: dict
    content_type: str
    received: bytearray = field(default_factory=bytearray)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _crc32c(data: bytes) -> str:
    return _b64(google_crc32c.Checksum(data).digest())


def _error(status: int, message: str, reason: str = "invalid"):
    # GCS's JSON error shape; google-api-core reads `error.message` into the exception.
    errors = [{"message": message, "domain": "global", "reason": reason}]
    return status, {}, {"error": {"code": status, "message": message, "errors": errors}}


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class GcsStub(StubServer):
    def __init__(self, *, buckets: set[str]):
        super().__init__()
        self.buckets = set(buckets)
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.refused: list[StubRequest] = []  # uploads answered with the ACL refusal
        self._sessions: dict[str, _Session] = {}
        self._generations = itertools.count(1_700_000_000_000_001)
        self._lock = threading.Lock()
        self.route_prefix("POST", "/upload/storage/v1/b/", self._upload_start)
        self.route_prefix("PUT", "/upload/storage/v1/b/", self._resumable_chunk)
        self.route_prefix("GET", "/storage/v1/b/", self._get)
        self.route_prefix("GET", "/download/storage/v1/b/", self._download)
        self.route_prefix("DELETE", "/storage/v1/b/", self._delete)

    # --- what a test reads ------------------------------------------------------------------

    def names(self, bucket: str) -> list[str]:
        return sorted(name for b, name in self.objects if b == bucket)

    def uploads(self) -> list[StubRequest]:
        return [r for r in self.requests if r.path.startswith("/upload/")]

    def downloads(self) -> list[StubRequest]:
        """Requests for an object's bytes (either media route)."""
        return [r for r in self.requests if r.method == "GET" and r.query.get("alt") == ["media"]]

    def requests_for(self, bucket: str, name: str) -> list[StubRequest]:
        """Every request that named this object (metadata, bytes or delete)."""
        quoted = quote(name, safe="")
        return [r for r in self.requests if r.path.endswith(f"/b/{quote(bucket)}/o/{quoted}")]

    def acl_requests(self) -> list[StubRequest]:
        """Every request that tried to set an object ACL."""
        return [r for r in self.requests if "predefinedAcl" in r.query or "acl" in _upload_metadata(r)]

    # --- routes -------------------------------------------------------------------------------

    def _unknown_params(self, request: StubRequest, allowed: set[str]):
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            return _error(501, f"The stand-in does not implement the parameters {unknown}.", "notImplemented")
        return None

    def _bucket_and_name(self, request: StubRequest, prefix: str) -> tuple[str, str | None]:
        """`<bucket>`, `<bucket>/o` (its objects) or `<bucket>/o/<quoted object name>`."""
        rest = request.path[len(prefix) :]
        if "/o/" in rest:
            bucket, _, name = rest.partition("/o/")
            return unquote(bucket), unquote(name)
        return unquote(rest.removesuffix("/o")), None

    def _acl_refusal(self, request: StubRequest, metadata: dict):
        if "predefinedAcl" in request.query or "acl" in metadata:
            self.refused.append(request)
            return _error(400, UNIFORM_ACCESS_REFUSAL)
        return None

    def _upload_start(self, request: StubRequest):
        if refused := self._unknown_params(request, _UPLOAD_PARAMS):
            return refused
        bucket, name = self._bucket_and_name(request, "/upload/storage/v1/b/")
        if bucket not in self.buckets or name is not None:
            return _error(404, "The specified bucket does not exist.", "notFound")
        upload_type = request.query.get("uploadType", [""])[0]
        if upload_type == "multipart":
            try:
                metadata, data, content_type = _multipart_parts(request)
            except ValueError:
                return _error(400, "The multipart upload is malformed.")
            if refused := self._acl_refusal(request, metadata):
                return refused
            return self._store(bucket, metadata, data, content_type)
        if upload_type == "resumable":
            metadata = request.json() or {}
            if refused := self._acl_refusal(request, metadata):
                return refused
            content_type = request.headers.get("x-upload-content-type") or "application/octet-stream"
            upload_id = uuid.uuid4().hex
            with self._lock:
                self._sessions[upload_id] = _Session(bucket, metadata, content_type)
            location = (
                f"{self.url}/upload/storage/v1/b/{quote(bucket)}/o?uploadType=resumable&upload_id={upload_id}"
            )
            return 200, {"Location": location}, b""
        return _error(400, f"Upload type {upload_type!r} is not supported.")

    def _resumable_chunk(self, request: StubRequest):
        if refused := self._unknown_params(request, _UPLOAD_PARAMS):
            return refused
        upload_id = request.query.get("upload_id", [""])[0]
        session = self._sessions.get(upload_id)
        if session is None:
            return _error(404, "No such upload session.", "notFound")
        # "bytes 0-1023/4096", "bytes 0-1023/*", or "bytes */4096" (a query or an empty end).
        spec = request.headers.get("content-range", "").removeprefix("bytes ")
        span, _, total = spec.partition("/")
        if span != "*":
            start = int(span.split("-")[0])
            if start != len(session.received):
                return _error(400, "Content-Range does not continue the upload.")
            session.received.extend(request.body)
        if total != "*" and len(session.received) == int(total):
            with self._lock:
                self._sessions.pop(upload_id, None)
            return self._store(
                session.bucket, session.metadata, bytes(session.received), session.content_type
            )
        headers = {"Range": f"bytes=0-{len(session.received) - 1}"} if session.received else {}
        return 308, headers, b""

    def _store(self, bucket: str, metadata: dict, data: bytes, content_type: str):
        name = metadata.get("name")
        if not name:
            return _error(400, "Required object name.", "required")
        if "crc32c" in metadata and metadata["crc32c"] != _crc32c(data):
            return _error(400, "Provided CRC32C does not match the object's data.")
        if "md5Hash" in metadata and metadata["md5Hash"] != _b64(hashlib.md5(data).digest()):  # noqa: S324
            return _error(400, "Provided MD5 hash does not match the object's data.")
        stored = StoredObject(
            bucket=bucket,
            name=name,
            data=data,
            content_type=metadata.get("contentType") or content_type,
            content_encoding=metadata.get("contentEncoding"),
            generation=next(self._generations),
        )
        with self._lock:
            self.objects[(bucket, name)] = stored
        return 200, {}, self._resource(stored)

    def _find(self, request: StubRequest, prefix: str) -> StoredObject | tuple:
        bucket, name = self._bucket_and_name(request, prefix)
        if bucket not in self.buckets:
            return _error(404, "The specified bucket does not exist.", "notFound")
        stored = self.objects.get((bucket, name or ""))
        generation = request.query.get("generation", [None])[0]
        if stored is None or (generation is not None and int(generation) != stored.generation):
            return _error(404, f"No such object: {bucket}/{name}", "notFound")
        return stored

    def _get(self, request: StubRequest):
        if refused := self._unknown_params(request, _OBJECT_PARAMS):
            return refused
        bucket, name = self._bucket_and_name(request, "/storage/v1/b/")
        if name is None and "/" not in request.path[len("/storage/v1/b/") :]:
            # The client reads its bucket's metadata in the background (for its telemetry).
            if bucket not in self.buckets:
                return _error(404, "The specified bucket does not exist.", "notFound")
            return 200, {}, self._bucket_resource(bucket)
        found = self._find(request, "/storage/v1/b/")
        if isinstance(found, tuple):
            return found
        if request.query.get("alt", ["json"])[0] == "media":
            return self._media(request, found)
        return 200, {}, self._resource(found)

    def _download(self, request: StubRequest):
        if refused := self._unknown_params(request, _OBJECT_PARAMS):
            return refused
        found = self._find(request, "/download/storage/v1/b/")
        return found if isinstance(found, tuple) else self._media(request, found)

    def _media(self, request: StubRequest, stored: StoredObject):
        headers = {
            "Content-Type": stored.content_type,
            "X-Goog-Hash": f"crc32c={_crc32c(stored.data)},md5={_b64(hashlib.md5(stored.data).digest())}",  # noqa: S324
            "X-Goog-Generation": str(stored.generation),
            "X-Goog-Stored-Content-Length": str(len(stored.data)),
            "X-Goog-Stored-Content-Encoding": stored.content_encoding or "identity",
        }
        data = stored.data
        if stored.content_encoding == "gzip":
            # As GCS does: the stored bytes as they are to a client that accepts gzip,
            # otherwise decompressed on the way out ("decompressive transcoding").
            if "gzip" in request.headers.get("accept-encoding", ""):
                headers["Content-Encoding"] = "gzip"
            else:
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError, zlib.error):
                    return _error(503, "The object's content could not be transcoded.", "backendError")
        elif stored.content_encoding:
            headers["Content-Encoding"] = stored.content_encoding
        return 200, headers, data

    def _delete(self, request: StubRequest):
        if refused := self._unknown_params(request, _OBJECT_PARAMS):
            return refused
        found = self._find(request, "/storage/v1/b/")
        if isinstance(found, tuple):
            return found
        with self._lock:
            self.objects.pop((found.bucket, found.name), None)
        return 204, {}, b""

    def _bucket_resource(self, bucket: str) -> dict:
        return {
            "kind": "storage#bucket",
            "id": bucket,
            "name": bucket,
            "projectNumber": "100000000001",
            "metageneration": "1",
            "location": "EUROPE-WEST1",
            "locationType": "region",
            "storageClass": "STANDARD",
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": True},
                "bucketPolicyOnly": {"enabled": True},
                "publicAccessPrevention": "enforced",
            },
        }

    def _resource(self, stored: StoredObject) -> dict:
        quoted = quote(stored.name, safe="")
        resource = {
            "kind": "storage#object",
            "id": f"{stored.bucket}/{stored.name}/{stored.generation}",
            "selfLink": f"{self.url}/storage/v1/b/{stored.bucket}/o/{quoted}",
            "mediaLink": (
                f"{self.url}/download/storage/v1/b/{stored.bucket}/o/{quoted}"
                f"?generation={stored.generation}&alt=media"
            ),
            "name": stored.name,
            "bucket": stored.bucket,
            "generation": str(stored.generation),
            "metageneration": "1",
            "contentType": stored.content_type,
            "storageClass": "STANDARD",
            "size": str(len(stored.data)),
            "md5Hash": _b64(hashlib.md5(stored.data).digest()),  # noqa: S324
            "crc32c": _crc32c(stored.data),
            "etag": _b64(str(stored.generation).encode()),
            "timeCreated": _rfc3339(stored.created),
            "updated": _rfc3339(stored.created),
            "timeStorageClassUpdated": _rfc3339(stored.created),
        }
        if stored.content_encoding:
            resource["contentEncoding"] = stored.content_encoding
        return resource


def _multipart_parts(request: StubRequest) -> tuple[dict, bytes, str]:
    """The two parts of a multipart/related upload: the object's JSON metadata, then its
    bytes (with their content type)."""
    content_type = request.headers.get("content-type", "")
    boundary = content_type.partition("boundary=")[2].strip('"').encode()
    delimiter = b"--" + boundary
    parts = request.body.split(delimiter)
    # ["", metadata part, media part, "--"]: each part is CRLF, headers, CRLF CRLF, body, CRLF.
    if not boundary or len(parts) != 4 or parts[3].strip() != b"--":
        raise ValueError("not a two-part multipart/related upload")
    decoded = []
    for part in parts[1:3]:
        head, _, body = part[2:].partition(b"\r\n\r\n")
        headers = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (line.decode().partition(":") for line in head.split(b"\r\n"))
        )
        decoded.append((headers, body[:-2]))
    (_, metadata), (media_headers, data) = decoded
    return json.loads(metadata), data, media_headers.get("content-type", "application/octet-stream")


def _upload_metadata(request: StubRequest) -> dict:
    """The object metadata an upload request carries, or {} for any other request."""
    if request.method != "POST" or not request.path.startswith("/upload/"):
        return {}
    try:
        if request.query.get("uploadType") == ["multipart"]:
            return _multipart_parts(request)[0]
        return request.json() or {}
    except ValueError:
        return {}
