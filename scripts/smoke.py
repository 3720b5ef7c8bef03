#!/usr/bin/env python3
"""End-to-end smoke test of a running NexusAPI deployment, from the outside, through its
public HTTP API only. Prints one row per check and exits non-zero if any failed.

    scripts/smoke.py --base-url https://nexus.example.com

Credentials come from the environment, never the command line:
  SMOKE_TOKEN                      an access token of an admin of the smoke organisation
                                   (`manage.py smoke_account` prints one), or
  SMOKE_EMAIL / SMOKE_PASSWORD     that admin's password sign-in;
  SMOKE_METRICS_TOKEN              the deployment's METRICS_TOKEN (optional).

Run it as a dedicated organisation, never a customer's: it creates and deletes a data
source and a webhook endpoint, and ends by spending the organisation's rate limit to see the
429. The ETL and webhook checks need the deployment to reach this script: it serves a
paginated JSON API (the data source) and a webhook receiver on --listen-host. For a
deployment on this machine that is all (it must allow private addresses, as `make up`
does). For a remote one, give each server a fixed port and a public https address that
reaches it (a tunnel): --source-port/--source-url and --receiver-port/--receiver-url.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from etl.mock_api import MockApi  # stdlib only: no Django needed

REQUEST_TIMEOUT = 15
# The source: enough items that at least one batch (ETL_BATCH_SIZE, 10,000 by default)
# commits before the failure injected at SOURCE_FAIL_FROM_PAGE.
SOURCE_ITEMS = 12_000
SOURCE_PAGE_SIZE = 100
SOURCE_FAIL_FROM_PAGE = 101
MAX_DELIVERY_BYTES = 1024 * 1024
CHECKS = ("health", "sign-in", "job", "cache", "api-key", "etl", "resume", "webhook", "metrics", "rate-limit")
# The burst that must end in a 429 is at most this long (the organisation's limit).
MAX_BURST = 2_000


class CheckFailed(Exception):
    pass


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    seconds: float


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def poll(what: str, probe: Callable[[], object], *, timeout: float) -> object:
    """probe() until it returns something truthy; a pause that grows from 0.2 to 2 s between
    tries, so a slow deployment is not hammered (every try counts against the rate limit)."""
    deadline = time.monotonic() + timeout
    pause = 0.2
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout:.0f} s")
        time.sleep(pause)
        pause = min(pause * 1.5, 2.0)


class Receiver:
    """A webhook receiver: records each POST with its headers and body."""

    def __init__(self, host: str, port: int = 0):
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 <= length <= MAX_DELIVERY_BYTES:  # reachable through a tunnel: bounded
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.arrived.set()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Smoke:
    def __init__(self, args: argparse.Namespace):
        self.base = args.base_url.rstrip("/")
        self.api_base = f"{self.base}/api/v1"
        self.args = args
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "nexus-smoke/1"
        self.results: list[Result] = []
        self.cleanup: list[tuple[str, str]] = []  # (description, API path to DELETE)
        self.text = f"Smoke test {uuid.uuid4()}: the quarterly report shows revenue up and costs flat."

    # --- plumbing ---------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, f"{self.api_base}{path}", timeout=REQUEST_TIMEOUT, **kwargs)

    def data(self, response: requests.Response, status: int | tuple[int, ...]) -> dict:
        statuses = (status,) if isinstance(status, int) else status
        if response.status_code not in statuses:
            raise CheckFailed(
                f"{response.request.method} {response.url}: HTTP {response.status_code}, "
                f"expected {'/'.join(map(str, statuses))}: {response.text[:300]}"
            )
        return response.json()["data"] if response.content else {}

    def check(self, name: str, run: Callable[[], str]) -> bool:
        if name in self.args.skip:
            return True
        started = time.monotonic()
        try:
            detail, ok = run(), True
        except CheckFailed as exc:
            detail, ok = str(exc), False
        except requests.RequestException as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        except Exception as exc:  # an answer of an unexpected shape: this row fails, the rest run
            detail, ok = f"unexpected answer ({type(exc).__name__}: {exc})", False
        self.results.append(Result(name, ok, detail, time.monotonic() - started))
        mark = "ok  " if ok else "FAIL"
        print(f"{mark}  {name:<10} {time.monotonic() - started:6.1f} s  {detail}", flush=True)
        return ok

    # --- the checks --------------------------------------------------------------------------
    def health(self) -> str:
        response = self.http.get(f"{self.base}/health", timeout=REQUEST_TIMEOUT)
        expect(
            response.status_code == 200, f"GET /health: HTTP {response.status_code}: {response.text[:200]}"
        )
        body = response.json()
        expect(
            body.get("status") == "ok", f"GET /health says {body.get('status')!r}: {json.dumps(body)[:300]}"
        )
        return "status ok; " + ", ".join(
            f"{name} {c.get('status')}" for name, c in body.get("checks", {}).items()
        )

    def sign_in(self) -> str:
        token = os.environ.get("SMOKE_TOKEN", "")
        how = "SMOKE_TOKEN"
        if not token:
            email, password = os.environ.get("SMOKE_EMAIL", ""), os.environ.get("SMOKE_PASSWORD", "")
            expect(bool(email and password), "set SMOKE_TOKEN, or SMOKE_EMAIL and SMOKE_PASSWORD")
            token, how = self._password_sign_in(email, password), "password sign-in"
        self.http.headers["Authorization"] = f"Bearer {token}"
        me = self.data(self.api("GET", "/auth/me"), 200)
        expect(me.get("role") == "admin", f"the smoke user must be an admin, is {me.get('role')!r}")
        org = me.get("organisation") or {}
        return f"{how}: {me['user'].get('email')} admin of {org.get('slug')}"

    def _password_sign_in(self, email: str, password: str) -> str:
        """The browser's way: the sign-in form (session), then the session's API token."""
        login = f"{self.base}/accounts/login/"
        page = self.http.get(login, timeout=REQUEST_TIMEOUT)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        expect(
            page.status_code == 200 and match is not None, f"GET {login}: HTTP {page.status_code}, no form"
        )
        signed_in = self.http.post(
            login,
            data={"login": email, "password": password, "csrfmiddlewaretoken": match.group(1)},
            headers={"Referer": login},
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )
        expect(
            signed_in.status_code == 302, f"sign-in refused (HTTP {signed_in.status_code}): wrong password?"
        )
        csrf = self.http.cookies.get("csrftoken", "")
        issued = self.api("POST", "/auth/token", headers={"X-CSRFToken": csrf, "Referer": login})
        return self.data(issued, 200)["access"]

    def job(self) -> str:
        before = self.data(self.api("GET", "/credits"), 200)["balance"]
        job = self.data(self.api("POST", "/summarize", json={"text": self.text}), 202)
        expect(job["status"] in ("pending", "running"), f"a new job is {job['status']!r}")

        def finished():
            current = self.data(self.api("GET", f"/jobs/{job['id']}"), 200)
            expect(current["status"] != "failed", f"job {job['id']} failed: {current.get('error')}")
            return current if current["status"] == "completed" else None

        done = poll(f"job {job['id']} completed", finished, timeout=self.args.timeout)
        after = self.data(self.api("GET", "/credits"), 200)["balance"]
        expect(
            before - after == done["cost"] > 0,
            f"balance {before} -> {after} for a job costing {done['cost']}",
        )
        return f"job {job['id']} completed by {done['provider']}, {done['cost']} credits charged"

    def cache(self) -> str:
        before = self.data(self.api("GET", "/credits"), 200)["balance"]
        started = time.monotonic()
        job = self.data(self.api("POST", "/summarize", json={"text": self.text}), 201)
        elapsed_ms = (time.monotonic() - started) * 1000
        expect(job["cache_hit"] is True and job["status"] == "completed", f"not served from the cache: {job}")
        expect(job["cost"] == 0, f"a cache hit cost {job['cost']} credits")
        after = self.data(self.api("GET", "/credits"), 200)["balance"]
        expect(after == before, f"balance moved {before} -> {after} on a cache hit")
        return f"the same text again: completed at once ({elapsed_ms:.0f} ms), 0 credits"

    def api_key(self) -> str:
        """A key made by the admin works within its scopes, is refused outside them naming
        the scope, cannot manage keys, and stops working the moment it is revoked."""
        created = self.data(
            self.api(
                "POST",
                "/api-keys",
                json={"name": f"smoke-{uuid.uuid4().hex[:8]}", "scopes": ["billing:read"]},
            ),
            201,
        )
        key_path = f"/api-keys/{created['id']}"
        self.cleanup.append(("API key", key_path))
        expect(
            created["key"].startswith("nx_live_"), f"the key does not look like one: {created['key'][:8]}..."
        )
        with requests.Session() as program:
            program.headers.update(
                {"Authorization": f"Bearer {created['key']}", "User-Agent": "nexus-smoke/1"}
            )

            def call(method: str, path: str, **kwargs) -> requests.Response:
                return program.request(method, f"{self.api_base}{path}", timeout=REQUEST_TIMEOUT, **kwargs)

            self.data(call("GET", "/credits"), 200)
            refused = call("POST", "/summarize", json={"text": self.text})
            required = (refused.json().get("error") or {}).get("details", {}).get("required_scope")
            expect(
                refused.status_code == 403 and required == "jobs:write",
                f"outside its scopes: {refused.text[:200]}",
            )
            expect(call("GET", "/api-keys").status_code == 403, "a key could list the organisation's keys")
            self.data(self.api("DELETE", key_path), 204)
            self.cleanup.remove(("API key", key_path))
            after = call("GET", "/credits")
            expect(after.status_code == 401, f"a revoked key answered HTTP {after.status_code}")
        return f"key {created['prefix']}: billing:read works, jobs:write refused (403), revoked -> 401"

    def etl(self) -> str:
        source = self.data(
            self.api(
                "POST",
                "/etl/sources",
                json={
                    "name": f"Smoke {uuid.uuid4().hex[:8]}",
                    "kind": "api",
                    "config": {"url": self.args.source_url or self.mock.url, "page_size": SOURCE_PAGE_SIZE},
                    "api_key": self.mock.api_key,
                    "field_mapping": {
                        "external_id": "id",
                        "title": "title",
                        "body": "content",
                        "url": "link",
                    },
                    "requests_per_second": 100,
                    # Never scheduled: only the runs this script starts touch it.
                    "enabled": False,
                },
            ),
            201,
        )
        self.source_id = source["id"]
        self.cleanup.append(("data source", f"/etl/sources/{source['id']}"))
        # The injected failure: the API refuses pages from SOURCE_FAIL_FROM_PAGE on.
        self.mock.fail_from_page = SOURCE_FAIL_FROM_PAGE
        self.failed_run = self.run_source("failed")
        expect(self.failed_run["inserted"] > 0, f"nothing committed before the failure: {self.failed_run}")
        return (
            f"source {source['id']}: {self.failed_run['inserted']:,} records ingested, then the run failed "
            f"as injected ({self.failed_run['error'][:80]})"
        )

    def run_source(self, outcome: str) -> dict:
        run = self.data(self.api("POST", f"/etl/sources/{self.source_id}/run"), 202)

        def finished():
            current = self.data(self.api("GET", f"/etl/runs/{run['run_id']}"), 200)
            return current if current["status"] in ("succeeded", "failed") else None

        result = poll(f"run {run['run_id']} finished", finished, timeout=self.args.timeout)
        expect(
            result["status"] == outcome,
            f"run {result['id']} {result['status']}, expected {outcome}: {result}",
        )
        return result

    def resume(self) -> str:
        expect(hasattr(self, "failed_run"), "needs the ETL check's failed run")
        served_before = len(self.mock.requests)
        self.mock.fail_from_page = None
        resumed = self.run_source("succeeded")
        expect(
            resumed["trigger"] == "resume",
            f"the run after a failure is a {resumed['trigger']!r}, not a resume",
        )
        first_page = int(self.mock.requests[served_before]["query"].get("page", 1))
        expect(first_page > 1, "the resumed run started again from page 1")
        ingested = self.failed_run["inserted"] + resumed["inserted"]
        expect(
            resumed["updated"] == 0, f"the resumed run updated {resumed['updated']} records it had already"
        )
        expect(
            ingested == SOURCE_ITEMS,
            f"{ingested:,} records inserted over the two runs, the API has {SOURCE_ITEMS:,}",
        )
        total = self.api("GET", "/data", params={"source": self.source_id, "limit": 1})
        stored = self.data(total, 200) is not None and total.json()["meta"]["total"]
        expect(stored == SOURCE_ITEMS, f"{stored:,} records stored, the API has {SOURCE_ITEMS:,}")
        return (
            f"resumed at page {first_page}: {resumed['inserted']:,} more, {stored:,} records in all, "
            "none twice"
        )

    def webhook(self) -> str:
        url = self.args.receiver_url or f"http://{self.args.listen_host}:{self.receiver.port}/hooks/smoke"
        endpoint = self.data(
            self.api(
                "POST",
                "/webhooks",
                json={"url": url, "event_types": ["job.completed"], "description": "smoke"},
            ),
            201,
        )
        self.cleanup.append(("webhook endpoint", f"/webhooks/{endpoint['id']}"))
        delivery = self.data(self.api("POST", f"/webhooks/{endpoint['id']}/test"), 202)
        expect(self.receiver.arrived.wait(self.args.timeout), f"no delivery reached {url}")
        headers, body = self.receiver.received[0]
        try:
            payload = Webhook(endpoint["secret"]).verify(body, headers)
        except WebhookVerificationError as exc:
            raise CheckFailed(f"the delivery's signature does not verify: {exc}") from exc
        expect(
            headers.get("webhook-id") == delivery["id"], "the delivery's webhook-id is not the delivery's id"
        )

        def recorded():
            current = self.data(self.api("GET", f"/webhooks/{endpoint['id']}/deliveries"), 200)
            mine = [d for d in current if d["id"] == delivery["id"]]
            return mine[0] if mine and mine[0]["status"] == "succeeded" else None

        expect(
            payload.get("type") == "webhook.test",
            f"the delivery is a {payload.get('type')!r}, not webhook.test",
        )
        poll("the delivery recorded as succeeded", recorded, timeout=self.args.timeout)
        return "webhook.test delivered, signature verified, recorded as succeeded"

    def metrics(self) -> str:
        url = f"{self.base}/metrics"
        token = os.environ.get("SMOKE_METRICS_TOKEN", "")
        expect(bool(token), "set SMOKE_METRICS_TOKEN to the deployment's METRICS_TOKEN")
        refused = requests.get(url, timeout=REQUEST_TIMEOUT)
        expect(
            refused.status_code == 404, f"GET /metrics without the token: HTTP {refused.status_code}, not 404"
        )
        scraped = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT)
        expect(scraped.status_code == 200, f"GET /metrics with the token: HTTP {scraped.status_code}")
        names = {line.split()[2] for line in scraped.text.splitlines() if line.startswith("# TYPE nexus_")}
        expect(len(names) > 10, f"only {len(names)} nexus_ series exported")
        return f"404 without the token; {len(names)} nexus_ series with it"

    def rate_limit(self) -> str:
        probe = self.api("GET", "/auth/me")
        policy, state = probe.headers.get("RateLimit-Policy", ""), probe.headers.get("RateLimit", "")
        expect(bool(policy and state), f"no RateLimit-Policy / RateLimit headers: {dict(probe.headers)}")
        remaining = int(re.search(r"r=(\d+)", state).group(1))
        expect(remaining < MAX_BURST, f"{remaining} requests left: too many to spend in a smoke test")

        def one(_):
            return self.api("GET", "/auth/me")

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(one, range(remaining + 1)))
        refused = [a for a in answers if a.status_code == 429]
        expect(len(refused) >= 1, f"{remaining + 1} requests past the limit and no 429")
        expect(all(a.status_code in (200, 429) for a in answers), "unexpected statuses in the burst")
        retry_after = refused[0].headers.get("Retry-After", "")
        expect(
            retry_after.isdigit() and int(retry_after) > 0,
            f"429 without a usable Retry-After: {retry_after!r}",
        )
        error = refused[0].json()["error"]["code"]
        return f"{policy}; after {remaining} more requests: 429 {error}, Retry-After {retry_after} s"

    # --- running -------------------------------------------------------------------------------
    def run(self) -> int:
        print(f"Smoke test of {self.base}")
        self.mock = MockApi(
            host=self.args.listen_host,
            port=self.args.source_port,
            items=SOURCE_ITEMS,
            api_key=uuid.uuid4().hex,
        ).start()
        self.receiver = Receiver(self.args.listen_host, self.args.receiver_port)
        try:
            if self.check("health", self.health) and self.check("sign-in", self.sign_in):
                self.check("job", self.job)
                self.check("cache", self.cache)
                self.check("api-key", self.api_key)
                if self.check("etl", self.etl):
                    self.check("resume", self.resume)
                self.check("webhook", self.webhook)
                self.remove_what_was_created()
                self.check("metrics", self.metrics)
                self.check("rate-limit", self.rate_limit)  # last: it spends the organisation's budget
        finally:
            self.remove_what_was_created()
            self.mock.stop()
            self.receiver.close()
        failed = [r.name for r in self.results if not r.ok]
        expected = len(CHECKS) - len(self.args.skip)
        summary = f"{len(self.results) - len(failed)}/{expected} checks passed"
        print(summary + (f"; failed: {', '.join(failed)}" if failed else ""))
        return 1 if failed or len(self.results) < expected else 0

    def remove_what_was_created(self) -> None:
        while self.cleanup:
            what, path = self.cleanup.pop()
            response = self.api("DELETE", path)
            if response.status_code not in (204, 404):
                print(f"warning: could not delete the {what} ({path}): HTTP {response.status_code}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", required=True, help="The deployment, e.g. https://nexus.example.com")
    parser.add_argument("--listen-host", default="127.0.0.1", help="Where this script's servers listen.")
    parser.add_argument(
        "--source-port", type=int, default=0, help="The data source's port (0: any free one)."
    )
    parser.add_argument("--receiver-port", type=int, default=0, help="The webhook receiver's port (0: any).")
    parser.add_argument(
        "--source-url",
        default="",
        help="The data source as the deployment reaches it (default: its local URL).",
    )
    parser.add_argument(
        "--receiver-url",
        default="",
        help="The webhook receiver as the deployment reaches it (default: local).",
    )
    parser.add_argument(
        "--timeout", type=float, default=60, help="Seconds to wait for a job, a run or a delivery."
    )
    parser.add_argument(
        "--skip",
        type=_check_names,
        default=(),
        help="Checks not to run, comma separated (e.g. etl,resume,webhook for a deployment that cannot reach "
        f"this machine). Checks: {', '.join(CHECKS)}.",
    )
    return Smoke(parser.parse_args()).run()


def _check_names(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in CHECKS]
    if "job" in names and "cache" not in names:
        names += ("cache",)  # the cache check asks again for the job's text
    if "etl" in names and "resume" not in names:
        names += ("resume",)  # the resume check continues the etl check's failed run
    if unknown or {"health", "sign-in"} & set(names):
        raise argparse.ArgumentTypeError(
            f"cannot skip {', '.join(unknown or names)}; checks: {', '.join(CHECKS)}"
        )
    return names


if __name__ == "__main__":
    sys.exit(main())
