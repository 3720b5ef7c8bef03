"""The Content-Security-Policy in a real browser: every page, the admin and Swagger UI load
with no violation, and the pages' HTMX still works (a job sent and followed to its result,
the token button, a rate-limited job told in place). Violations are collected from the
browser's `securitypolicyviolation` events and its console."""

from __future__ import annotations

import httpx
import pytest

from nexus.tests.browser.helpers import sign_in
from tenants.tests.helpers import bearer_for

pytestmark = pytest.mark.browser

# Runs before any page script in every document, so even a violation during loading is kept.
# (Playwright's wait_for_function is given arrow functions: a bare expression is run with
# eval() inside the page, which the policy forbids like any other eval.)
COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__csp.push(event.violatedDirective + " " + (event.blockedURI || "inline") + " " + event.sourceFile);
});
"""

PAGES = [
    "/",
    "/jobs",
    "/audits",
    "/data",
    "/webhooks",
    "/billing",
    "/members",
    "/api-access",
    "/no-such-page",
]


class Violations:
    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        page.context.add_init_script(COLLECT)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def visit(self, url: str) -> list[str]:
        """Open `url`, let it settle, and return every violation seen there."""
        response = self.page.goto(url)
        assert response is not None and response.status < 500, url
        assert response.headers.get("content-security-policy", "").startswith("default-src 'self'")
        self.page.wait_for_load_state("networkidle")
        found = self.page.evaluate("window.__csp") + self.console + self.errors
        self.console.clear()
        self.errors.clear()
        return found


def test_the_collector_sees_a_violation(page, live_web, person):
    """The control: an inline script injected into a page is blocked and reported."""
    violations = Violations(page)
    sign_in(page, live_web, person)
    page.wait_for_url(f"{live_web.url}/")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
        " document.body.appendChild(s); }"
    )
    page.wait_for_function("() => window.__csp.length > 0")
    assert page.evaluate("window.__ran") is None
    assert any(v.startswith("script-src") for v in page.evaluate("window.__csp"))
    assert violations is not None


def test_every_page_the_admin_and_the_docs_load_without_a_violation(page, live_web, person):
    person.admin.is_staff = person.admin.is_superuser = True
    person.admin.save(update_fields=["is_staff", "is_superuser"])
    violations = Violations(page)
    assert violations.visit(f"{live_web.url}/accounts/login/") == []
    sign_in(page, live_web, person)
    page.wait_for_url(f"{live_web.url}/")
    seen = {}
    for path in [
        *PAGES,
        "/api/docs/",
        "/api/docs/v2/",
        "/admin/",
        "/admin/tenants/organisation/",
        f"/admin/tenants/organisation/{person.pk}/change/",
        "/admin/tenants/user/",
        f"/admin/tenants/user/{person.admin.pk}/change/",
    ]:
        seen[path] = violations.visit(f"{live_web.url}{path}")
        if path.startswith("/api/docs/"):
            page.locator(".swagger-ui .info .title").wait_for(state="visible")
            seen[path] += page.evaluate("window.__csp")
        if path.startswith("/admin/"):
            assert "django site admin" in page.title().lower(), page.title()
    assert {path: found for path, found in seen.items() if found} == {}


def test_htmx_still_sends_a_job_and_shows_its_result(page, live_web, person):
    person.grant(100)
    violations = Violations(page)
    sign_in(page, live_web, person, path="/jobs")
    page.wait_for_url(f"{live_web.url}/jobs")
    page.evaluate("window.__notReloaded = true")
    page.get_by_label("Text to process").fill("The launch went well. Customers were happy.")
    page.get_by_role("button", name="Summarise — 10 credits").click()
    page.locator("[data-job-output]").wait_for(state="visible", timeout=20_000)
    assert "A stand-in summary." in page.locator("[data-job-output]").inner_text()
    assert page.evaluate("window.__notReloaded") is True  # swapped in by HTMX, not a reload
    assert page.evaluate("window.__csp") == []
    assert violations.console == []
    assert violations.errors == []


def test_the_token_button_works_from_its_own_script(page, live_web, person):
    violations = Violations(page)
    sign_in(page, live_web, person, path="/api-access")
    page.wait_for_url(f"{live_web.url}/api-access")
    page.get_by_role("button", name="Get an access token").click()
    output = page.locator("#token-output")
    page.wait_for_function("() => document.getElementById('token-output').textContent.startsWith('TOKEN=')")
    assert "Expires at" in output.inner_text()
    assert page.evaluate("window.__csp") == []
    assert violations.errors == []


def test_a_rate_limited_job_is_told_in_place_and_nothing_is_charged(page, live_web, person):
    from django_tenants.utils import tenant_context

    from billing.selectors import credits_balance

    person.grant(100)
    person.api_rate_limit = 2
    person.save(update_fields=["api_rate_limit"])
    violations = Violations(page)
    sign_in(page, live_web, person, path="/jobs")
    page.wait_for_url(f"{live_web.url}/jobs")
    token = bearer_for(person.admin)
    for _ in range(2):  # the API and the pages share the organisation's budget
        response = httpx.get(f"{live_web.url}/api/v1/org", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    page.get_by_label("Text to process").fill("One more job than the budget allows.")
    page.get_by_role("button", name="Summarise — 10 credits").click()
    message = page.locator("#job-result [data-rate-limited]")
    message.wait_for(state="visible")
    assert "Too many requests" in message.inner_text()
    assert "Nothing was charged" in message.inner_text()
    page.wait_for_function(
        "() => !document.querySelector('[data-job-button]').disabled"
    )  # the buttons come back once the answer is in
    with tenant_context(person):
        assert credits_balance() == 100
    assert page.evaluate("window.__csp") == []
    assert violations.errors == []
