"""What every connector shares: the HTTP client of the source, local files confined to the
allowed roots, the source's API key (a server-held key only ever of the running
organisation), and the final cursor once the stream is exhausted."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection

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


# Words of A-Z and 0-9 joined by single underscores: without "__" in a name, the last "__"
# of a variable name separates the owner's schema from the key's name, so no name one
# organisation can give spells another organisation's variable.
API_KEY_NAME = re.compile(r"^[A-Z0-9]+(?:_[A-Z0-9]+)*$")
API_KEY_NAME_MAX = 64


def server_key_variable(name: str, *, schema: str | None = None) -> str:
    """The environment variable holding the current organisation's server-held key `name`.
    The operator fixes the owner by putting the organisation's schema in the name."""
    return f"ETL_SOURCE_KEY__{(schema or connection.schema_name).upper()}__{name}"


def server_key(name) -> str | None:
    """The current organisation's server-held key called `name`, or None when it has none
    by that name (whether or not another organisation has)."""
    if not isinstance(name, str) or len(name) > API_KEY_NAME_MAX or not API_KEY_NAME.match(name):
        return None
    if connection.schema_name in (None, "", "public"):
        return None
    return os.environ.get(server_key_variable(name)) or None


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

    def __init__(self, source: DataSource):
        self.source = source
        self.final_cursor: dict = {}
        # Where the next slice starts when this one stopped with no item to carry the
        # cursor (set by connectors that manage the budget).
        self.resume_cursor: dict | None = None
        self.budget = SliceBudget(seconds=float("inf"), pages=2**62)
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
