"""The pages in a real browser: sign-in, the self-refreshing dashboard, jobs followed to
their result, and what people see when the server or the network goes away."""

import httpx
import pytest
from django_tenants.utils import tenant_context

from tenants.tests.helpers import bearer_for

pytestmark = pytest.mark.browser

PASSWORD = "a-long-unusual-passphrase"


@pytest.fixture
def person(live_org):
    live_org.admin.set_password(PASSWORD)
    live_org.admin.save()
    return live_org


def sign_in(page, server, org, path="/"):
    page.goto(f"{server.url}{path}")
    page.get_by_label("Email").fill(org.admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def balance(page) -> str:
    return page.locator("[data-balance]").inner_text()


def test_signed_out_visitor_is_sent_to_sign_in_and_back(page, live_web, person):
    page.goto(f"{live_web.url}/jobs")
    assert "/accounts/login/?next=" in page.url and page.url.endswith("jobs")
    sign_in(page, live_web, person, path="/jobs")
    page.wait_for_url(f"{live_web.url}/jobs")
    assert page.get_by_role("heading", name="Jobs").is_visible()


def test_dashboard_balance_updates_by_itself(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person)
    page.wait_for_function("document.querySelector('[data-balance]').innerText === '100'")
    page.evaluate("window.__notReloaded = true")
    response = httpx.post(
        f"{live_web.url}/api/v1/summarize",
        json={"text": "Created through the API while the dashboard is open."},
        headers={"Authorization": f"Bearer {bearer_for(person.admin)}"},
    )
    assert response.status_code == 202
    page.wait_for_function("document.querySelector('[data-balance]').innerText === '90'", timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True


def test_server_stopped_keeps_the_last_known_balance(page, live_web, person):
    person.grant(70)
    sign_in(page, live_web, person)
    page.wait_for_function("document.querySelector('[data-balance]').innerText === '70'")
    live_web.stop()
    warning = page.locator("[data-stale-warning]")
    warning.wait_for(state="visible", timeout=10_000)
    assert "Could not refresh" in warning.inner_text() and "as of" in warning.inner_text()
    assert balance(page) == "70"
    assert "Traceback" not in page.content()


def test_job_shows_a_spinner_then_its_result_without_a_reload(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/jobs")
    page.evaluate("window.__notReloaded = true")
    page.get_by_label("Text to process").fill("The launch went well. [slow] Customers were happy.")
    page.get_by_role("button", name="Summarise — 10 credits").click()
    page.locator("#job-result[data-job-active] [aria-busy=true]").wait_for(state="visible")
    assert page.get_by_role("button", name="Analyse — 25 credits").is_disabled()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert "A stand-in summary." in page.locator("[data-job-output]").inner_text()
    assert page.evaluate("window.__notReloaded") is True
    assert page.get_by_role("button", name="Analyse — 25 credits").is_enabled()
    assert "completed" in page.locator("#job-history").inner_text()


def test_polling_stops_once_the_job_is_finished(page, live_web, person):
    person.grant(100)
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/result" in request.url else None)
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Count my polls. [slow] Then stop.")
    page.get_by_role("button", name="Summarise — 10 credits").click()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    finished_at = len(polls)
    assert finished_at >= 1
    page.wait_for_timeout(5_000)  # more than two polling periods
    assert len(polls) == finished_at


def test_network_cut_mid_job_shows_a_readable_error_then_recovers(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("Survive the outage. [slow]")
    page.get_by_role("button", name="Summarise — 10 credits").click()
    page.locator("#job-result[data-job-active]").wait_for(state="visible")
    page.context.set_offline(True)
    note = page.locator("#job-connection")
    note.wait_for(state="visible", timeout=10_000)
    assert "could not reach the server" in note.inner_text() and "keeps running" in note.inner_text()
    page.context.set_offline(False)
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert note.is_hidden()


def test_insufficient_credits_says_so_and_links_to_billing(page, live_web, person):
    sign_in(page, live_web, person, path="/jobs")
    page.get_by_label("Text to process").fill("I cannot afford this.")
    page.get_by_role("button", name="Analyse — 25 credits").click()
    problem = page.locator("[data-job-problem]")
    problem.wait_for(state="visible")
    assert "Not enough credits" in problem.inner_text()
    problem.get_by_role("link", name="Buy credits").click()
    page.wait_for_url(f"{live_web.url}/billing")
    with tenant_context(person):
        from jobs.models import Job

        assert Job.objects.count() == 0
