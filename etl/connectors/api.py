"""Paginated HTTP JSON APIs with an API key header. The cursor is the `updated_since` the
run asked with, the page and the offset in it, and the newest update time seen; a finished
run moves `updated_since` forward so the next run only asks for what changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from etl.config import ApiSourceConfig
from etl.connectors.base import Connector, api_key_for
from etl.http import FetchError
from etl.normalise import ItemRejected, parse_datetime


def _dig(body, path: str):
    for part in filter(None, (path or "").split(".")):
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


@dataclass
class Position:
    """Where a run is in the API: the `updated_since` it asks with, the page, the offset of
    the first item of that page still to read, and the newest update time seen."""

    since: str | None
    page: int
    offset: int
    newest: str | None

    @classmethod
    def from_cursor(cls, cursor: dict) -> Position:
        since = cursor.get("updated_since")
        return cls(
            since=since,
            page=int(cursor.get("page") or 1),
            offset=int(cursor.get("offset") or 0),
            newest=cursor.get("max_seen") or since,
        )

    def cursor(self, *, offset: int | None = None) -> dict:
        """The checkpoint to resume here (or after the item before `offset` of this page)."""
        return {
            "updated_since": self.since,
            "page": self.page,
            "offset": self.offset if offset is None else offset,
            "max_seen": self.newest,
        }

    def next_page(self) -> None:
        self.page, self.offset = self.page + 1, 0


class ApiConnector(Connector):
    manages_budget = True
    config: ApiSourceConfig

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        key = api_key_for(self.source)
        if key:
            headers[self.config.api_key_header] = key
        return headers

    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:
        position = Position.from_cursor(cursor)
        previous_page: list | None = None
        while True:
            self._check_page_limit(position.page)
            if self._slice_over():
                # Stop between pages (each slice fetches at least one, so a run always moves on).
                self.budget.cut = True
                self.resume_cursor = position.cursor()
                return
            body, records = self._read_page(position)
            if records and records == previous_page:
                raise FetchError("The API returned the same page twice; it may ignore the page parameter.")
            previous_page = records
            yield from self._page_items(records, position)
            if self._last_page(body, records):
                break
            position.next_page()
        self.final_cursor = {"updated_since": position.newest, "page": 1, "offset": 0}

    def _check_page_limit(self, page: int) -> None:
        # Counted from the run's first page, not from where a slice or a resume picked up,
        # so a run cannot fetch more than its budget by being continued.
        limit = self.config.page_limit
        if page > limit:
            raise FetchError(f"Stopped after {limit} pages; the API never reported its last page.")

    def _slice_over(self) -> bool:
        budget = self.budget
        return budget.abandoned.is_set() or bool(budget.pages_fetched and budget.spent())

    def request_params(self, position: Position) -> dict[str, str | int]:
        config = self.config
        params: dict[str, str | int] = {
            config.page_param: position.page,
            config.page_size_param: config.page_size,
        }
        if position.since:
            params[config.updated_since_param] = position.since
        return params

    def _read_page(self, position: Position) -> tuple[object, list]:
        """One page: the answer's body and its list of records."""
        response = self.http.get(self.config.url, params=self.request_params(position))
        self.budget.pages_fetched += 1
        try:
            body = response.json()
        except ValueError as exc:
            raise FetchError("The API did not answer with JSON.") from exc
        records = _dig(body, self.config.records_path)
        if not isinstance(records, list):
            raise FetchError(f"The API's answer has no list at {self.config.records_path!r}.")
        return body, records

    def _page_items(self, records: list, position: Position) -> Iterator[tuple[dict, dict]]:
        """The page's items from the position's offset on, each with the cursor after it."""
        for index, item in enumerate(records):
            if index < position.offset or not isinstance(item, dict):
                continue
            position.newest = _newer(position.newest, item.get(self.config.updated_field))
            yield item, position.cursor(offset=index + 1)

    def _last_page(self, body, records: list) -> bool:
        """A short page, or an answer that says there is no next page (`"next_page": null`)."""
        if len(records) < self.config.page_size:
            return True
        return isinstance(body, dict) and "next_page" in body and body["next_page"] is None


def _newer(current: str | None, candidate) -> str | None:
    try:
        candidate_time = parse_datetime(candidate)
    except ItemRejected:
        return current
    if candidate_time is None:
        return current
    if current is None or candidate_time > parse_datetime(current):
        return candidate_time.isoformat()
    return current
