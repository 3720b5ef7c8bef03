"""The configuration of each kind of data source as one typed model: `ApiSourceConfig`,
`CsvSourceConfig`, `RssSourceConfig`.

The rule it keeps: a source is saved only when its configuration passes every rule of its
kind (`source_config_parse`) — a URL whose host is public (the SSRF check), a path confined
to the organisation's own data directory, no key inside the configuration, a server-held
key named only by this organisation's short name, bounded paging — and every refusal is one
422 VALIDATION_ERROR with `details.fields.config`, made from Pydantic's errors in one place
(`_refusal`). A run reads the stored configuration through the same model
(`source_config_read`) without the checks that depend on the moment (DNS, the directory,
the environment's keys, the current page cap): it makes them itself when it fetches.

The configuration is stored as the client sent it (unknown keys included); the models are
the typed view of it.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.conf import settings
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from etl.http import FetchError
from etl.models import SourceKind
from etl.owned import API_KEY_NAME, API_KEY_NAME_MAX, NO_SUCH_FILE, local_file, server_key
from nexus.api.errors import ValidationFailed, field_error
from nexus.net import UnsafeURL, resolve_public_url

# Refusals whose type is also told to the client as `details.reason`.
REASONS = frozenset({"unsafe_url", "unknown_key_name"})
PAGE_SIZE_MAX = 1000
_SAVING = "saving"


def _refuse(message: str, reason: str = "source_config") -> PydanticCustomError:
    # The message is a value of the template, so braces in it are never read as fields.
    return PydanticCustomError(reason, "{message}", {"message": message})


def _saving(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(_SAVING))


def _whole(value: Any) -> int | None:
    """An integer, or a string of one ("50"); never a bool or a float."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _text(default: str):
    """A free-text setting: empty means the default (as a run has always read it)."""
    return BeforeValidator(lambda value: str(value) if value else default)


def _absent_if_empty(value: Any) -> Any:
    return value if value else None


class SourceConfig(BaseModel):
    """What every kind shares: where the content is (`url` or `path`) and the server-held
    key's name. Keys the models do not name are allowed and kept, as they always were."""

    model_config = ConfigDict(frozen=True, extra="allow")

    url: str | None = None
    path: str | None = None
    # Present only to be refused: a key is sent as `api_key` beside the configuration.
    api_key: object = None
    # The old form, naming any variable of the server; a stored row may still carry it.
    api_key_env: object = None
    api_key_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _refuse("config must be an object.")
        return data

    @field_validator("url", mode="before")
    @classmethod
    def _public_url(cls, url: Any, info: ValidationInfo) -> str | None:
        if not url:
            return None  # a file source without a URL: its path, or an uploaded file
        # Checked as text: a number or a list is refused as a URL without a scheme.
        url = str(url)
        if _saving(info):
            try:
                resolve_public_url(url, require_https=settings.ETL_REQUIRE_HTTPS)
            except UnsafeURL as exc:
                raise _refuse(f"config.url: {exc}", "unsafe_url") from None
        return url

    @field_validator("path", mode="before")
    @classmethod
    def _own_file(cls, path: Any, info: ValidationInfo) -> str | None:
        if path is None or path == "":
            return None
        if not isinstance(path, str):
            raise _refuse(NO_SUCH_FILE)
        if _saving(info):
            try:
                local_file(path)
            except FetchError:
                raise _refuse(NO_SUCH_FILE) from None
        return path

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_key_inside(cls, value: Any, info: ValidationInfo) -> Any:
        if _saving(info):
            raise _refuse("Send the API key as api_key, not inside config.")
        return value

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _no_variable_names(cls, value: Any, info: ValidationInfo) -> Any:
        if _saving(info):
            # It named any variable of the server: an organisation could borrow another's key.
            raise _refuse(
                "config.api_key_env is no longer accepted; name a server-held key of this "
                "organisation with config.api_key_name."
            )
        return value

    @field_validator("api_key_name", mode="before")
    @classmethod
    def _own_key_name(cls, name: Any, info: ValidationInfo) -> str:
        if not isinstance(name, str) or len(name) > API_KEY_NAME_MAX or not API_KEY_NAME.match(name):
            raise _refuse(
                "config.api_key_name is the short name of a server-held key: capital letters and "
                "digits, words joined by single underscores, at most 64 characters (e.g. WEATHER)."
            )
        # One message whether the name is unknown or another organisation's: no oracle of names.
        if _saving(info) and server_key(name) is None:
            raise _refuse(
                "config.api_key_name: no server-held key of this organisation has that name.",
                "unknown_key_name",
            )
        return name


class FileSourceConfig(SourceConfig):
    """CSV and RSS: at most one of `url` and `path`; neither, and the file is uploaded."""

    @model_validator(mode="before")
    @classmethod
    def _one_place(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("url") and data.get("path"):
            raise _refuse("Give at most one of config.path or config.url.")
        return data


class CsvSourceConfig(FileSourceConfig):
    delimiter: Annotated[str, _text(",")] = ","
    # None: UTF-8, with or without a byte-order mark.
    encoding: Annotated[str | None, BeforeValidator(_absent_if_empty)] = None


class RssSourceConfig(FileSourceConfig):
    pass


def _page_size(value: Any) -> int:
    size = _whole(value)
    if size is None or not 1 <= size <= PAGE_SIZE_MAX:
        raise _refuse(f"config.page_size must be a whole number from 1 to {PAGE_SIZE_MAX}.")
    return size


class ApiSourceConfig(SourceConfig):
    """A paginated HTTP JSON API; its key goes in `api_key_header`."""

    url: str  # required (checked first, below); keeps its place among the fields
    api_key_header: Annotated[str, _text("X-API-Key")] = "X-API-Key"
    # Dotted path to the list of items in each answer; empty: the answer is the list.
    records_path: Annotated[str, _text("")] = "data"
    page_param: Annotated[str, _text("page")] = "page"
    page_size_param: Annotated[str, _text("per_page")] = "per_page"
    page_size: Annotated[int, BeforeValidator(_page_size)] = 100
    updated_since_param: Annotated[str, _text("updated_since")] = "updated_since"
    updated_field: Annotated[str, _text("updated_at")] = "updated_at"
    # None: ETL_MAX_PAGES.
    max_pages: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _reads_its_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("url"):
            raise _refuse("An API source needs config.url.")
        if isinstance(data, dict) and data.get("path"):
            raise _refuse("An API source reads its URL; config.path is for CSV and RSS sources.")
        return data

    @field_validator("max_pages", mode="before")
    @classmethod
    def _bounded_pages(cls, value: Any, info: ValidationInfo) -> int:
        pages = _whole(value)
        # The cap may be lowered after a source was saved: a run then stops at the cap.
        ceiling = settings.ETL_MAX_PAGES if _saving(info) else float("inf")
        if pages is None or not 1 <= pages <= ceiling:
            raise _refuse(f"config.max_pages must be a whole number from 1 to {settings.ETL_MAX_PAGES}.")
        return pages

    @property
    def page_limit(self) -> int:
        """How many pages one run may fetch: `max_pages`, never more than ETL_MAX_PAGES."""
        return min(self.max_pages or settings.ETL_MAX_PAGES, settings.ETL_MAX_PAGES)


MODELS: dict[str, type[SourceConfig]] = {
    SourceKind.API: ApiSourceConfig,
    SourceKind.CSV: CsvSourceConfig,
    SourceKind.RSS: RssSourceConfig,
}


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """The first rule broken (rules are checked in the order the fields are declared),
    as (type, message)."""
    error = exc.errors(include_url=False)[0]
    return error["type"], error["msg"]


def _refusal(exc: ValidationError) -> ValidationFailed:
    """Pydantic's errors as the project's field error: the one place they are converted."""
    reason, message = _first_error(exc)
    return field_error("config", message, **({"reason": reason} if reason in REASONS else {}))


def source_config_parse(*, kind: str, config: Any) -> SourceConfig:
    """The configuration of a source about to be saved, checked against every rule of its
    kind (in the organisation's schema: paths and key names are the organisation's own).
    ValidationFailed (422) names the first rule broken."""
    try:
        return MODELS[kind].model_validate(config, context={_SAVING: True})
    except ValidationError as exc:
        raise _refusal(exc) from None


def source_config_read(*, kind: str, config: Any) -> SourceConfig:
    """The stored configuration of a source, for a run. FetchError when the row does not
    have the shape of its kind (written by hand, not through the services): the run fails
    with the reason."""
    try:
        return MODELS[kind].model_validate(config)
    except ValidationError as exc:
        raise FetchError(f"The source's configuration is not valid: {_first_error(exc)[1]}") from None
