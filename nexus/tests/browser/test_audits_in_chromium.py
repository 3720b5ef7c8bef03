"""An audit in Chromium, against the real web server and a real worker consuming the
`audits` queue (Gemini answered by the local stand-in): sign in, upload a generated X
archive, watch the progress bar move and reach 100 % without a reload, pause and resume on
the way, read the flagged items; the page fits a phone and breaks no Content-Security-Policy
rule."""

from __future__ import annotations

import dataclasses
import io
import re
import time

import pytest
from django_tenants.utils import tenant_context

from audits.models import Audit, AuditStatus
from audits.samples import sample_tweets, write_x_archive_js
from nexus.tests.browser.conftest import LiveServer
from nexus.tests.browser.helpers import sign_in
from nexus.tests.live import WorkerProcess

pytestmark = pytest.mark.browser

TWEETS = 300
BATCH = 20
FLAG_EVERY = 7  # every seventh tweet carries the stand-in's [flag:offensive] marker
LATENCY = 0.4  # seconds the stand-in takes per batch: 15 batches, time to pause on the way
CSP_COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__csp.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


@pytest.fixture(scope="module")
def _live_stack(django_db_setup, gemini_stub):
    """The module's web server and worker, as in conftest, with a provider quota that never
    holds a batch back: the stand-in's latency alone paces the audit."""
    env = {
        "GEMINI_API_KEY": "test-key",
        "GEMINI_BASE_URL": gemini_stub.url,
        "JOB_PROVIDER_TIMEOUT_SECONDS": "5",
        "AUDIT_PROVIDER_RPM": "100000",
        "AUDIT_PROVIDER_TPM": "100000000",
    }
    worker = WorkerProcess(env, name="browser-audits")
    server = LiveServer(env)
    worker.start()
    server.start()
    yield server, worker
    server.stop()
    worker.stop()


@pytest.fixture
def stand_in(gemini_stub):
    gemini_stub.reset_audits()
    gemini_stub.audit_latency = LATENCY
    yield gemini_stub
    gemini_stub.reset_audits()


def _archive() -> tuple[bytes, int, int]:
    """A generated tweets.js, every FLAG_EVERY-th tweet marked to be flagged; with the
    number of tweets that are not retweets and how many of those are marked."""
    tweets = []
    for n, tweet in enumerate(sample_tweets(TWEETS, seed=11)):
        if n % FLAG_EVERY == 0:
            tweet = dataclasses.replace(tweet, text=f"{tweet.text} [flag:offensive]")
        tweets.append(tweet)
    out = io.BytesIO()
    write_x_archive_js(out, iter(tweets))
    kept = [t for t in tweets if not t.is_retweet]
    return out.getvalue(), len(kept), sum("[flag:offensive]" in t.text for t in kept)


def _audit(org) -> Audit:
    with tenant_context(org):
        return Audit.objects.get()


def _bar(page) -> int:
    return round(float(page.get_by_role("progressbar").get_attribute("aria-valuenow")))


def test_an_audit_is_started_followed_to_the_end_paused_and_resumed_without_a_reload(
    page, phone, live_web, person, stand_in
):
    started = time.monotonic()
    person.grant(1000)
    archive, kept, marked = _archive()
    page.context.add_init_script(CSP_COLLECT)
    sign_in(page, live_web, person, path="/audits")
    page.wait_for_url(f"{live_web.url}/audits")
    assert "Each item costs 1 credit" in page.locator("[data-audit-price]").inner_text()

    page.get_by_label("File").set_input_files(
        files=[{"name": "tweets.js", "mimeType": "text/javascript", "buffer": archive}]
    )
    page.get_by_label("What should be flagged").fill("Anything offensive")
    page.get_by_label("Leave out retweets").check()
    page.get_by_role("button", name="Start the audit").click()
    page.wait_for_url(re.compile(rf"{re.escape(live_web.url)}/audits/[0-9a-f-]{{36}}$"))
    assert f"Audit started: {kept} items, {kept} credits reserved" in page.inner_text("main")

    # From here on the page is never loaded again: everything arrives by polling.
    loads = []
    page.on("framenavigated", lambda frame: loads.append(frame.url) if frame == page.main_frame else None)
    bar = page.get_by_role("progressbar")
    assert bar.get_attribute("aria-valuemax") == "100"
    page.wait_for_function(
        "() => Number(document.querySelector('[role=progressbar]').getAttribute('aria-valuenow')) > 0"
    )
    assert 0 < _bar(page) < 100, "the audit should still be running: raise LATENCY"
    status = page.locator("[data-audit-status]")
    assert status.inner_text() == "Running"

    page.get_by_role("button", name="Pause").click()
    page.wait_for_function("() => document.querySelector('[data-audit-status]').textContent === 'Paused'")
    # The button that was used is gone: keyboard focus is on the one that replaced it.
    page.wait_for_function("() => document.activeElement.textContent === 'Resume'", timeout=2000)
    assert "Paused. Batches already sent finish" in page.locator("[data-audit-controls]").inner_text()
    time.sleep(2 * LATENCY + 0.3)  # what was in flight commits; then nothing moves
    held = _audit(person).done
    time.sleep(3 * LATENCY)
    paused = _audit(person)
    assert paused.status == AuditStatus.PAUSED and paused.done == held < paused.total

    page.get_by_role("button", name="Resume").click()
    page.wait_for_function(
        "() => Number(document.querySelector('[role=progressbar]').getAttribute('aria-valuenow')) === 100",
        timeout=30_000,
    )
    page.wait_for_function("() => document.querySelector('[data-audit-status]').textContent === 'Completed'")
    done = _audit(person)
    assert (done.status, done.done, done.flagged, done.failed) == (AuditStatus.COMPLETED, kept, marked, 0)
    assert bar.get_attribute("aria-valuetext") == f"{kept} of {kept} items (100 %)"
    assert page.locator("[data-audit-flagged]").inner_text() == str(marked)
    assert page.locator("#audit-announce").inner_text() == "Audit completed."
    assert not page.locator("[data-audit-polling]").count(), "polling stops once the audit has ended"
    assert page.get_by_role("button", name="Pause").count() == 0

    # The flagged items arrived with the last poll: their reasons and categories, one page.
    rows = page.locator("[data-audit-item]")
    assert rows.count() == min(marked, 25)
    first = rows.first.inner_text()
    assert "[flag:offensive]" in first and "A stand-in verdict." in first and "offensive" in first
    assert (
        page.get_by_role("link", name="Flagged items as CSV").get_attribute("href").endswith("/results.csv")
    )
    assert loads == [], f"the page was loaded again: {loads}"
    assert page.evaluate("() => window.__csp") == []

    # The same page on a phone: nothing sticks out sideways.
    sign_in(phone, live_web, person, path=page.url.removeprefix(live_web.url))
    phone.wait_for_url(page.url)
    widths = phone.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == 390, f"the audit page is {widths[0]} px wide on a 390 px screen"
    print(
        f"audit browser test: {time.monotonic() - started:.1f} s"
    )  # the timing, for whoever runs it with -s
