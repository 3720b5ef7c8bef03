"""What every connector shares: the HTTP client of the source, the source's uploaded file
or a local file confined to the organisation's own directories, and the final cursor once
the stream is exhausted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.files.storage import storages
from django.db import connection

from etl.http import FetchError, SourceHttp
from etl.models import DataSource
from nexus.crypto import decrypt

# One message for every path that is not the organisation's own file (absolute, outside its
# directory, another organisation's, a symlink out, missing): no oracle of what exists.
NO_SUCH_FILE = "config.path names no file in this organisation's data directory."
NO_FILE_UPLOADED = (
    "No file has been uploaded yet for this source; upload one (POST /api/v1/etl/sources/{id}/file) "
    "or set config.url."
)


def local_file(path: str, *, schema_name: str | None = None) -> Path:
    """A local source file of the current organisation: `path` is relative to
    `<root>/<org schema>/` of a root in ETL_LOCAL_ROOTS, and after resolving symlinks and
    `..` it must still be a regular file inside that directory."""
    schema_name = schema_name or connection.schema_name
    relative = Path(str(path))
    if not str(path) or relative.is_absolute() or not schema_name or schema_name == "public":
        raise FetchError(NO_SUCH_FILE)
    for root in settings.ETL_LOCAL_ROOTS:
        own_directory = (Path(root) / schema_name).resolve()
        try:
            resolved = (own_directory / relative).resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            continue
        if resolved.is_relative_to(own_directory) and resolved.is_file():
            return resolved
    raise FetchError(NO_SUCH_FILE)


def api_key_for(source: DataSource) -> str | None:
    if source.api_key_encrypted:
        return decrypt(source.api_key_encrypted)
    env_name = source.config.get("api_key_env")
    if env_name:
        if not str(env_name).startswith("ETL_SOURCE_KEY_"):
            raise FetchError("config.api_key_env must name a variable starting with ETL_SOURCE_KEY_.")
        value = os.environ.get(env_name)
        if not value:
            raise FetchError(f"The environment variable {env_name} holding the API key is not set.")
        return value
    return None


class Connector:
    def __init__(self, source: DataSource):
        self.source = source
        # Taken now, in the run's thread: items() is read by a producer thread whose own
        # database connection is not in the organisation's schema.
        self.schema_name = connection.schema_name
        self.final_cursor: dict = {}
        self.http = SourceHttp(requests_per_second=source.requests_per_second, headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json, text/csv, application/rss+xml, */*"}

    def read_bytes(self, *, path: str | None, url: str | None) -> bytes:
        if self.source.file_key:
            return self._read_uploaded()
        if path:
            # Checked again now: the directory may have changed since the source was saved.
            file = local_file(path, schema_name=self.schema_name)
            if file.stat().st_size > settings.ETL_MAX_FILE_BYTES:
                raise FetchError("The file is larger than the limit for one source.")
            return file.read_bytes()
        if url:
            return self.http.get(url).content  # capped at ETL_MAX_FILE_BYTES while it is read
        raise FetchError(NO_FILE_UPLOADED)

    def _read_uploaded(self) -> bytes:
        # The key is the server's own choice, but a row copied between schemas must still
        # never read another organisation's object.
        if not self.source.file_key.startswith(f"{self.schema_name}/etl/{self.source.pk}/"):
            raise FetchError("The uploaded file is missing from storage; upload it again.")
        storage = storages["default"]
        try:
            with storage.open(self.source.file_key, "rb") as handle:
                data = handle.read(settings.ETL_MAX_FILE_BYTES + 1)
        except (FileNotFoundError, OSError) as exc:
            raise FetchError("The uploaded file is missing from storage; upload it again.") from exc
        if len(data) > settings.ETL_MAX_FILE_BYTES:
            raise FetchError("The file is larger than the limit for one source.")
        return data

    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()
