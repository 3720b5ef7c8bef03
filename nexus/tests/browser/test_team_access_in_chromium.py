"""API keys and the audit log in a real browser: an admin makes a key on the page, a program
uses it within its scopes and is refused outside them, the secret is shown once, revoking
asks first and takes effect at once, and the audit log page shows who did it."""

import pytest
import requests

from nexus.tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser


def _api(server, method: str, path: str, secret: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{server.url}/api/v1{path}",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
        **kwargs,
    )


def test_a_key_made_on_the_page_works_within_its_scopes_until_it_is_revoked(page, live_web, person):
    person.grant(100)
    sign_in(page, live_web, person, path="/api-keys")
    page.wait_for_url(f"{live_web.url}/api-keys")
    page.get_by_label("Name").fill("reporting")
    page.get_by_label("billing:read").check()
    page.get_by_label("jobs:read").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("[data-api-key-secret]").inner_text().strip()
    assert secret.startswith("nx_live_")

    assert _api(live_web, "GET", "/credits", secret).json()["data"]["balance"] == 100
    assert _api(live_web, "GET", "/jobs", secret).status_code == 200
    refused = _api(live_web, "POST", "/summarize", secret, json={"text": "Summarise me, please."})
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["required_scope"] == "jobs:write"
    assert _api(live_web, "GET", "/api-keys", secret).status_code == 403

    # Shown once: the next visit lists the key by its prefix only.
    page.reload()
    assert page.locator("[data-api-key-secret]").count() == 0
    row = page.locator('tr[data-api-key="reporting"]')
    assert secret.partition(".")[0] in row.inner_text()
    assert secret not in page.content()

    # Revoking asks first; once confirmed, the program is refused from its next request.
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Revoke reporting").click()
    page.wait_for_url(f"{live_web.url}/api-keys")
    assert questions and "Revoke reporting" in questions[0]
    assert "revoked" in page.locator('tr[data-api-key="reporting"]').inner_text()
    assert _api(live_web, "GET", "/credits", secret).status_code == 401

    # The audit log says who made and revoked it.
    page.goto(f"{live_web.url}/audit-log?action=api_key.*")
    events = page.locator("[data-audit-event]")
    assert events.count() == 2
    assert f"user:{person.admin.email}" in page.locator("[data-audit-log]").inner_text()
