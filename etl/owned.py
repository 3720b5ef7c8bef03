"""What an organisation owns outside its schema and may name in a source's configuration:
its files under `<root>/<org schema>/` of each ETL_LOCAL_ROOTS entry, and its server-held
API keys `ETL_SOURCE_KEY__<ORG SCHEMA>__<NAME>`.

The rule it keeps: a name given by an organisation only ever reaches that organisation's
own file or key, and every name that does not gets the same answer (no oracle of what
exists elsewhere).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from django.conf import settings
from django.db import connection

from etl.http import FetchError

# One message for every path that is not the organisation's own file (absolute, outside its
# directory, another organisation's, a symlink out, missing): no oracle of what exists.
NO_SUCH_FILE = "config.path names no file in this organisation's data directory."


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
