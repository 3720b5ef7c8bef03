"""What every connector shares: the source's configuration as its kind's typed model
(etl.config), the HTTP client of the source, the source's uploaded file or a local file
confined to the organisation's own directories (etl.owned), the source's API key (a
server-held key only ever of the running organisation), and the final cursor once the
stream is exhausted."""

from __future__ import annotations

import posixpath
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.core.files.storage import storages
from django.db import connection

from etl.config import SourceConfig, source_config_read
from etl.http import FetchError, SourceHttp
from etl.models import DataSource
from etl.owned import API_KEY_NAME, local_file, server_key, server_key_variable
from nexus.crypto import decrypt

log = structlog.get_logger(__name__)

NO_FILE_UPLOADED = (
    "No file has been uploaded yet for this source; upload one (POST /api/v1/etl/sources/{id}/file) "
    "or set config.url."
)


def server_key_name(source: DataSource) -> str | None:
    """The server-held key name a source uses. A row saved with the old `api_key_env` counts
    only when that variable is this organisation's own; any other variable is ignored, so
    the run fails closed."""
    name = source.config.get("api_key_name")
    if name:
        return str(name)
    legacy = source.config.get("api_key_env")
    if isinstance(legacy, str) and legacy:
        prefix = server_key_variable("")
        if legacy.startswith(prefix):
            return legacy[len(prefix) :] or "?"
        return "?"  # not this organisation's: treated as a name that does not exist
    return None


def api_key_for(source: DataSource) -> str | None:
    if source.api_key_encrypted:
        return decrypt(source.api_key_encrypted)
    name = server_key_name(source)
    if name is None:
        return None
    value = server_key(name)
    if value is None:
        shown = name if API_KEY_NAME.match(name) else "named by this source"
        raise FetchError(f"The server-held API key {shown} is not available to this organisation.")
    return value


@dataclass
class SliceBudget:
    """How long one slice of a run may fetch. Whoever stops the stream early sets `cut`."""

    seconds: float
    pages: int
    started: float = field(default_factory=time.monotonic)
    pages_fetched: int = 0
    cut: bool = False
    # Set when the run's thread leaves the slice early (an error, a time limit): the
    # stream stops at its next item or page instead of reading on with no one to store it.
    abandoned: threading.Event = field(default_factory=threading.Event)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started >= self.seconds

    def spent(self) -> bool:
        return self.abandoned.is_set() or self.out_of_time() or self.pages_fetched >= self.pages


class Connector:
    # True when the connector checks `budget` itself, at its own safe stopping points
    # (an API between pages); otherwise the runner cuts its item stream when time is up.
    manages_budget = False
    config: SourceConfig

    def __init__(self, source: DataSource):
        self.source = source
        # The stored configuration as its kind's typed model (FetchError: not of its shape).
        self.config = source_config_read(kind=source.kind, config=source.config)
        # Taken now, in the run's thread: items() is read by a producer thread whose own
        # database connection is not in the organisation's schema.
        self.schema_name = connection.schema_name
        self.final_cursor: dict = {}
        # Where the next slice starts when this one stopped with no item to carry the
        # cursor (set by connectors that manage the budget).
        self.resume_cursor: dict | None = None
        self.budget = SliceBudget(seconds=float("inf"), pages=2**62)
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
        # The key is the server's own choice, but a row copied between schemas (or edited
        # by hand) must still never read another organisation's object: the key must lie
        # under this source's own prefix as written, with nothing the storage would resolve
        # elsewhere ("..", backslashes).
        key = self.source.file_key
        if (
            not key.startswith(f"{self.schema_name}/etl/{self.source.pk}/")
            or posixpath.normpath(key) != key
            or "\\" in key
        ):
            raise FetchError("The uploaded file is missing from storage; upload it again.")
        storage = storages["default"]
        try:
            with storage.open(key, "rb") as handle:
                data = handle.read(settings.ETL_MAX_FILE_BYTES + 1)
        except FileNotFoundError as exc:
            raise FetchError("The uploaded file is missing from storage; upload it again.") from exc
        except Exception as exc:  # the storage refused or is unreachable: the next run tries again
            log.warning("etl.storage_read_failed", error_class=type(exc).__name__)
            raise FetchError(
                "The uploaded file could not be read from storage; the next run tries again."
            ) from exc
        if len(data) > settings.ETL_MAX_FILE_BYTES:
            raise FetchError("The file is larger than the limit for one source.")
        return data

    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()
