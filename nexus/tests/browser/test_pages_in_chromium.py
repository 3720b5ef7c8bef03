"""The pages in a real browser: sign-in and sign-out, the self-refreshing dashboard, jobs
followed to their result, and what people see when the session, the server or the network
goes away."""

import httpx
import pytest
from django_tenants.utils import tenant_context

from nexus.tests.browser.helpers import PASSWORD, sign_in
from tenants.tests.helpers import bearer_for

pytestmark = pytest.mark.browser

SUMMARISE = "Summarise — 10 credits"
ANALYSE = "Analyse — 25 credits"


def job_count(org) -> int:
    from jobs.models import Job

    with tenant_context(org):
        return Job.objects.count()


def buttons_enabled(page) -> bool:
    return (
        page.get_by_role("button", name=SUMMARISE).is_enabled()
        and page.get_by_role("button", name=ANALYSE).is_enabled()
    )


def balance(page) -> str:
    return page.locator("[data-balance]").inner_text()


def test_signed_out_visitor_is_sent_to_sign_in_and_back(page, live_web, person):
    page.goto(f"{live_web.url}/jobs")
    assert "/accounts/login/?next=" in page.url
    assert page.url.endswith("jobs")
    sign_in(page, live_web, person, path="/jobs")
    page.wait_for_url(f"{live_web.url}/jobs")
    assert page.get_by_role("heading", name="Jobs").is_visible()


def test_dashboard_balance_updates_by_itself(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person)
    page.wait_for_function("() => document.querySelector('[data-balance]').innerText === '100'")
    page.evaluate("window.__notReloaded = true")
    response = httpx.post(
        f"{live_web.url}/api/v1/summarize",
        json={"text": "Created through the API while the dashboard is open."},
        headers={"Authorization": f"Bearer {bearer_for(person.admin)}"},
    )
    assert response.status_code == 202
    page.wait_for_function(
        "() => document.querySelector('[data-balance]').innerText === '90'", timeout=10_000
    )
    assert page.evaluate("window.__notReloaded") is True


def test_server_stopped_keeps_the_last_known_balance(page, live_web, person):
    person.grant(70)
    sign_in(page, live_web, person)
    page.wait_for_function("() => document.querySelector('[data-balance]').innerText === '70'")
    live_web.stop()
    warning = page.locator("[data-stale-warning]")
    warning.wait_for(state="visible", timeout=10_000)
    assert "Could not refresh" in warning.inner_text()
    assert "as of" in warning.inner_text()
    assert balance(page) == "70"
    assert "Traceback" not in page.content()


def test_job_shows_a_spinner_then_its_result_without_a_reload(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/jobs")
    page.evaluate("window.__notReloaded = true")
    page.get_by_label("Text to process").fill("The launch went well. [slow] Customers were happy.")
    page.get_by_role("button", name=SUMMARISE).click()
    page.locator("#job-result[data-job-active] [aria-busy=true]").wait_for(state="visible")
    assert page.get_by_role("button", name=ANALYSE).is_disabled()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert "A stand-in summary." in page.locator("[data-job-output]").inner_text()
    assert page.evaluate("window.__notReloaded") is True
    assert page.get_by_role("button", name=ANALYSE).is_enabled()
    assert "completed" in page.locator("#job-history").inner_text()


def test_polling_stops_once_the_job_is_finished(page, live_web, person):
    person.grant(100)
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/result" in request.url else None)
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Count my polls. [slow] Then stop.")
    page.get_by_role("button", name=SUMMARISE).click()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    finished_at = len(polls)
    assert finished_at >= 1
    page.wait_for_timeout(5_000)  # more than two polling periods
    assert len(polls) == finished_at


def test_network_cut_mid_job_shows_a_readable_error_then_recovers(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Survive the outage. [slow]")
    page.get_by_role("button", name=SUMMARISE).click()
    page.locator("#job-result[data-job-active]").wait_for(state="visible")
    page.context.set_offline(True)
    note = page.locator("#job-connection")
    note.wait_for(state="visible", timeout=10_000)
    assert "could not reach the server" in note.inner_text()
    assert "keeps running" in note.inner_text()
    page.context.set_offline(False)
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert note.is_hidden()


def test_insufficient_credits_says_so_and_links_to_billing(page, live_web, person):
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("I cannot afford this.")
    page.get_by_role("button", name=ANALYSE).click()
    problem = page.locator("[data-job-problem]")
    problem.wait_for(state="visible")
    assert "Not enough credits" in problem.inner_text()
    problem.get_by_role("link", name="Buy credits").click()
    page.wait_for_url(f"{live_web.url}/billing")
    assert job_count(person) == 0


def test_an_expired_session_returns_to_the_page_not_the_fragment(page, live_web, person):
    person.grant(40)
    sign_in(page, live_web, person)
    page.wait_for_url(f"{live_web.url}/")
    page.locator("[data-balance]").wait_for(state="visible")
    page.context.clear_cookies()  # the session is gone, as when it expires
    # The next balance refresh (every second here) is answered with HX-Redirect.
    page.wait_for_url(f"{live_web.url}/accounts/login/?next=/", timeout=10_000)
    page.get_by_label("Email").fill(person.admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_web.url}/")
    assert page.get_by_role("heading", name="Credit balance").is_visible()
    assert page.get_by_role("navigation", name="Main").is_visible()
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != "Times New Roman"
    assert balance(page) == "40"


def test_signing_out_ends_the_session(page, live_web, person):
    sign_in(page, live_web, person, path="/jobs")
    page.wait_for_url(f"{live_web.url}/jobs")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_web.url}/accounts/login/")
    assert page.get_by_role("button", name="Sign out").count() == 0
    page.goto(f"{live_web.url}/jobs")
    assert "/accounts/login/?next=" in page.url
    assert page.get_by_label("Password").is_visible()


def test_both_buttons_are_disabled_and_focus_moves_to_the_result_while_sending(page, live_web, person):
    person.grant(100)
    held = []
    page.route("**/jobs/submit", lambda route: held.append(route))
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Hold the request a moment.")
    # From the keyboard: the text area, then Tab to the first button and press Enter.
    page.get_by_label("Text to process").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == SUMMARISE
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('[data-job-button]:disabled').length === 2")
    assert page.locator("[data-job-button][aria-busy=true]").count() == 2
    assert page.evaluate("document.activeElement.id") == "job-result"
    assert "Sending your job" in page.locator("#job-result").inner_text()
    while not held:
        page.wait_for_timeout(50)
    held[0].continue_()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert page.evaluate("document.activeElement.id") == "job-result"
    assert buttons_enabled(page)


def test_a_new_job_is_in_the_history_at_once(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/jobs")
    assert "No jobs yet" in page.locator("#job-history").inner_text()
    page.get_by_label("Text to process").fill("Show me in the history. [slow]")
    page.get_by_role("button", name=SUMMARISE).click()
    page.locator("#job-result[data-job-active]").wait_for(state="visible")
    history = page.locator("#job-history")
    assert "No jobs yet" not in history.inner_text()
    first_row = history.locator("tbody tr").first
    assert "Summarize" in first_row.inner_text() or "Summarise" in first_row.inner_text()
    assert any(status in first_row.inner_text() for status in ("pending", "running"))
    assert "10" in first_row.inner_text()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert "completed" in history.locator("tbody tr").first.inner_text()


def test_a_failed_job_shows_its_error(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Refuse this one. [bad-request]")
    page.get_by_role("button", name=SUMMARISE).click()
    error = page.locator("[data-job-error]")
    error.wait_for(state="visible", timeout=20_000)
    assert "The job failed" in error.inner_text()
    assert "refunded" in error.inner_text()
    assert "failed" in page.locator("#job-history tbody tr").first.inner_text()
    assert buttons_enabled(page)


def test_sending_a_job_offline_says_so_and_charges_nothing(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Nobody will receive this.")
    page.context.set_offline(True)
    page.get_by_role("button", name=SUMMARISE).click()
    problem = page.locator("[data-job-send-error]")
    problem.wait_for(state="visible", timeout=10_000)
    assert problem.inner_text() == (
        "Could not reach the server to send your job. Check your connection and try again; "
        "if it went through after all, it appears in the history below with its cost."
    )
    page.wait_for_function("() => document.querySelectorAll('[data-job-button]:disabled').length === 0")
    assert buttons_enabled(page)
    assert page.locator("[data-job-button][aria-busy]").count() == 0
    page.context.set_offline(False)
    assert job_count(person) == 0
    # Back online, the same text goes through.
    page.get_by_role("button", name=SUMMARISE).click()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)


def test_a_server_error_when_sending_a_job_is_explained(page, live_web, person):
    person.grant(100)
    # Routes are set before the first navigation, so no request can slip past them.
    page.route("**/jobs/submit", lambda route: route.fulfill(status=502, body="Bad gateway"))
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("The proxy is down.")
    page.get_by_role("button", name=ANALYSE).click()
    problem = page.locator("[data-job-send-error]")
    problem.wait_for(state="visible", timeout=10_000)
    assert "server had a problem" in problem.inner_text()
    assert "error 502" in problem.inner_text()
    assert "Bad gateway" not in page.content()
    page.wait_for_function("() => document.querySelectorAll('[data-job-button]:disabled').length === 0")


def test_a_result_that_is_gone_stops_polling_and_says_so(page, live_web, person):
    person.grant(100)
    polls = []
    page.route(
        "**/result?*",
        lambda route: (polls.append(route.request.url), route.fulfill(status=404, body="Not here")),
    )
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Lose track of me. [slow]")
    page.get_by_role("button", name=SUMMARISE).click()
    problem = page.locator("[data-job-poll-error]")
    problem.wait_for(state="visible", timeout=10_000)
    assert "can no longer be found" in problem.inner_text()
    assert "could not reach the server" not in page.content()
    assert page.locator("#job-result[data-job-active]").count() == 0
    page.wait_for_function("() => document.querySelectorAll('[data-job-button]:disabled').length === 0")
    seen = len(polls)
    page.wait_for_timeout(4_500)  # two polling periods
    assert len(polls) == seen == 1


def test_a_server_error_while_polling_is_not_called_a_network_failure(page, live_web, person):
    person.grant(100)
    page.route("**/result?*", lambda route: route.fulfill(status=500, body="Oops"))
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Survive a server hiccup. [slow]")
    page.get_by_role("button", name=SUMMARISE).click()
    note = page.locator("#job-connection")
    note.wait_for(state="visible", timeout=10_000)
    assert "server had a problem" in note.inner_text()
    assert "error 500" in note.inner_text()
    assert "could not reach" not in note.inner_text()
    assert page.locator("#job-result[data-job-active]").count() == 1  # still asking
    page.unroute("**/result?*")
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert note.is_hidden()
