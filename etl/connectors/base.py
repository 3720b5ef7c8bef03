"""What every connector shares: the HTTP client of the source, local files confined to the
allowed roots, and the final cursor once the stream is exhausted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from etl.http import FetchError, SourceHttp
from etl.models import DataSource
from nexus.crypto import decrypt


def local_file(path: str) -> Path:
    """A local source file, only inside ETL_LOCAL_ROOTS (symlinks resolved): a source can
    never read the server's other files."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = Path(settings.BASE_DIR) / candidate
    resolved = candidate.resolve()
    for root in settings.ETL_LOCAL_ROOTS:
        if resolved.is_relative_to(Path(root).resolve()):
            return resolved
    raise FetchError("The file is outside the directories data sources may read.")


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
        self.final_cursor: dict = {}
        self.http = SourceHttp(requests_per_second=source.requests_per_second, headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {"Accept": "application/json, text/csv, application/rss+xml, */*"}

    def read_bytes(self, *, path: str | None, url: str | None) -> bytes:
        if path:
            file = local_file(path)
            if not file.is_file():
                raise FetchError(f"No such file: {path}")
            if file.stat().st_size > settings.ETL_MAX_FILE_BYTES:
                raise FetchError("The file is larger than the limit for one source.")
            return file.read_bytes()
        if url:
            return self.http.get(url).content  # capped at ETL_MAX_FILE_BYTES while it is read
        raise FetchError("The source has neither a path nor a URL.")

    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()
