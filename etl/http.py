"""HTTP for data sources: SSRF-checked URLs (connections pinned to the checked address), a
per-source rate limit, and retries with exponential backoff and jitter on 429, 5xx,
timeouts and connection errors, honouring Retry-After. Every retry is logged. Redirects
are not followed: a 3xx is an error, or a moved source would look like an empty one."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

import httpx
import structlog
from django.conf import settings

from nexus.logging import url_for_log
from nexus.net import Pinned, UnsafeURL, outbound_verify, pinned, read_limited, resolve_public_url

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class FetchError(RuntimeError):
    """The source could not be fetched; the message is safe to show (no keys, no bodies)."""


@dataclass(frozen=True)
class Fetched:
    status_code: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    def json(self):
        return json.loads(self.content)


class SourceHttp:
    def __init__(self, *, requests_per_second: float, headers: dict[str, str] | None = None):
        self.min_interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self.headers = headers or {}
        self._last_request = 0.0
        self._client = httpx.Client(
            timeout=settings.ETL_HTTP_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
            verify=outbound_verify(),
        )

    def close(self) -> None:
        self._client.close()

    def _pace(self) -> None:
        wait = self.min_interval - (time.monotonic() - self._last_request)
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), settings.ETL_RETRY_MAX_DELAY_SECONDS)
            except ValueError:
                pass
        base = settings.ETL_RETRY_BASE_DELAY_SECONDS * (2**attempt)
        jitter = random.uniform(0, settings.ETL_RETRY_BASE_DELAY_SECONDS)  # noqa: S311  # nosec B311
        return min(base + jitter, settings.ETL_RETRY_MAX_DELAY_SECONDS)

    def get(self, url: str, *, params: dict | None = None) -> Fetched:
        try:
            addresses = resolve_public_url(url, require_https=settings.ETL_REQUIRE_HTTPS)
        except UnsafeURL as exc:
            raise FetchError(str(exc)) from exc
        target = pinned(url, addresses)
        retries = settings.ETL_HTTP_RETRIES
        for attempt in range(retries + 1):
            self._pace()
            retry_after = None
            try:
                fetched = self._fetch(url, target, params)
            except httpx.TimeoutException:
                problem = "timeout"
            except httpx.TransportError as exc:
                problem = f"connection error ({type(exc).__name__})"
            else:
                if fetched.status_code not in RETRYABLE_STATUS:
                    if 300 <= fetched.status_code < 400:
                        location = fetched.headers.get("location", "")[:300] or "an unnamed location"
                        raise FetchError(
                            f"The source redirected to {location} (HTTP {fetched.status_code}) from {url}; "
                            "redirects are not followed. Use the final URL."
                        )
                    if fetched.status_code >= 400:
                        raise FetchError(f"The source answered HTTP {fetched.status_code} for {url}.")
                    return fetched
                problem = f"HTTP {fetched.status_code}"
                retry_after = fetched.headers.get("retry-after")
            if attempt == retries:
                raise FetchError(f"Gave up on {url} after {retries + 1} attempts (last: {problem}).")
            delay = self._backoff(attempt, retry_after)
            log.warning(
                "etl.http_retry",
                url=url_for_log(url),
                attempt=attempt + 1,
                problem=problem,
                delay_s=round(delay, 3),
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, url: str, target: Pinned, params: dict | None) -> Fetched:
        """One request, its body capped at ETL_MAX_FILE_BYTES and read within a total
        deadline: a huge or trickling answer cannot exhaust or hold a worker."""
        allowed = settings.ETL_HTTP_TIMEOUT_SECONDS * 4
        deadline = time.monotonic() + allowed
        with self._client.stream(
            "GET",
            target.url,
            params=params,
            headers={**self.headers, **target.headers},
            extensions=target.extensions,
        ) as response:
            body, cut = read_limited(response, limit=settings.ETL_MAX_FILE_BYTES + 1, deadline=deadline)
            status, headers = response.status_code, {k.lower(): v for k, v in response.headers.items()}
        if cut:
            if len(body) > settings.ETL_MAX_FILE_BYTES:
                raise FetchError(f"The answer from {url} is larger than the limit for one source.")
            raise FetchError(f"The answer from {url} took longer than {allowed:g} s.")
        return Fetched(status_code=status, headers=headers, content=body)
