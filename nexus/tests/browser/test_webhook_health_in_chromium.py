"""A failing webhook endpoint as a person meets it: the dashboard says so, the admin
dismisses the notice, and the webhooks page still shows the endpoint failing."""

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from nexus.tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser


def test_dashboard_notice_of_a_failing_endpoint_is_dismissed_by_the_admin(page, live_web, person):
    from webhooks.models import WebhookEndpoint, WebhookNotice
    from webhooks.services import webhook_endpoint_create

    with tenant_context(person):
        endpoint, _ = webhook_endpoint_create(url="http://127.0.0.1:9/hook", event_types=["job.completed"])
        # Written directly: the page needs a failing endpoint, not three real outages.
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            consecutive_failures=3,
            failing_since=timezone.now(),
            last_error="Could not connect: ConnectError.",
        )
        notice = WebhookNotice.objects.create(
            endpoint=endpoint, kind="failing", message="The last 3 deliveries all failed."
        )

    sign_in(page, live_web, person)
    page.wait_for_url(f"{live_web.url}/")
    shown = page.locator('[data-webhook-notice="failing"]')
    assert shown.is_visible()
    assert "The last 3 deliveries all failed." in shown.inner_text()

    shown.get_by_role("button", name="Dismiss").click()
    page.get_by_text("Notice dismissed.").wait_for()
    assert page.locator("[data-webhook-notice]").count() == 0
    with tenant_context(person):
        notice.refresh_from_db()
        assert notice.dismissed_at is not None

    page.goto(f"{live_web.url}/webhooks")
    health = page.locator('[data-health="failing"]')
    assert health.is_visible()
    assert "Last error: Could not connect: ConnectError." in page.locator("table").inner_text()
