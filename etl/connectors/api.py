"""Paginated HTTP JSON APIs with an API key header. The cursor is the `updated_since` the
run asked with, the page and the offset in it, and the newest update time seen; a finished
run moves `updated_since` forward so the next run only asks for what changed."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings

from etl.connectors.base import Connector, api_key_for
from etl.http import FetchError
from etl.normalise import ItemRejected, parse_datetime


def _dig(body, path: str):
    for part in filter(None, (path or "").split(".")):
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


class ApiConnector(Connector):
    manages_budget = True

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        key = api_key_for(self.source)
        if key:
            headers[self.source.config.get("api_key_header") or "X-API-Key"] = key
        return headers

    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:
        config = self.source.config
        url = config.get("url")
        if not url:
            raise FetchError("The source has no URL.")
        size = int(config.get("page_size") or 100)
        since = cursor.get("updated_since")
        page = int(cursor.get("page") or 1)
        offset = int(cursor.get("offset") or 0)
        newest = cursor.get("max_seen") or since
        updated_field = config.get("updated_field") or "updated_at"
        # Counted from the run's first page, not from where a slice or a resume picked up,
        # so a run cannot fetch more than its budget by being continued.
        max_pages = min(int(config.get("max_pages") or settings.ETL_MAX_PAGES), settings.ETL_MAX_PAGES)
        previous_page: list | None = None
        budget = self.budget
        while True:
            if page > max_pages:
                raise FetchError(f"Stopped after {max_pages} pages; the API never reported its last page.")
            if budget.abandoned.is_set() or (budget.pages_fetched and budget.spent()):
                # Stop between pages (each slice fetches at least one, so a run always moves on).
                budget.cut = True
                self.resume_cursor = {
                    "updated_since": since,
                    "page": page,
                    "offset": offset,
                    "max_seen": newest,
                }
                return
            params = {
                config.get("page_param") or "page": page,
                config.get("page_size_param") or "per_page": size,
            }
            if since:
                params[config.get("updated_since_param") or "updated_since"] = since
            response = self.http.get(url, params=params)
            budget.pages_fetched += 1
            try:
                body = response.json()
            except ValueError as exc:
                raise FetchError("The API did not answer with JSON.") from exc
            records = _dig(body, config.get("records_path", "data"))
            if not isinstance(records, list):
                raise FetchError(f"The API's answer has no list at {config.get('records_path', 'data')!r}.")
            if records and records == previous_page:
                raise FetchError("The API returned the same page twice; it may ignore the page parameter.")
            previous_page = records
            for index, item in enumerate(records):
                if index < offset or not isinstance(item, dict):
                    continue
                newest = _newer(newest, item.get(updated_field))
                yield item, {"updated_since": since, "page": page, "offset": index + 1, "max_seen": newest}
            if len(records) < size or (
                isinstance(body, dict) and body.get("next_page") is None and "next_page" in body
            ):
                break
            page, offset = page + 1, 0
        self.final_cursor = {"updated_since": newest, "page": 1, "offset": 0}


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
