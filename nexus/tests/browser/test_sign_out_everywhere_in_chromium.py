"""Sign out everywhere, as a person does it: the button on the API access page asks first,
then ends this browser's session, another browser's session and the API tokens."""

import pytest

from nexus.tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser


def test_sign_out_everywhere_asks_then_ends_every_session(page, chromium, live_web, person):
    from tenants.authentication import refresh_token_for
    from tenants.models import User

    token = str(refresh_token_for(person.admin).access_token)
    other = chromium.new_context()
    try:
        other_page = other.new_page()
        sign_in(other_page, live_web, person)
        other_page.wait_for_url(f"{live_web.url}/")
        # Off the dashboard, whose balance refresh would itself notice the ended session and
        # navigate to sign-in in the middle of the visit this test makes below.
        other_page.goto("about:blank")

        sign_in(page, live_web, person, path="/api-access")
        page.wait_for_url(f"{live_web.url}/api-access")
        button = page.get_by_role("button", name="Sign out everywhere")

        page.once("dialog", lambda dialog: dialog.dismiss())
        button.click()
        page.wait_for_timeout(500)
        assert page.url == f"{live_web.url}/api-access"
        assert User.objects.get(pk=person.admin.pk).token_version == 0

        page.once("dialog", lambda dialog: dialog.accept())
        button.click()
        page.wait_for_url(f"{live_web.url}/accounts/login/")
        page.get_by_text("Signed out everywhere").wait_for()
        assert User.objects.get(pk=person.admin.pk).token_version == 1

        other_page.goto(f"{live_web.url}/jobs")
        assert "/accounts/login/" in other_page.url
        api = other.request.get(
            f"{live_web.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert api.status == 401
    finally:
        other.close()
