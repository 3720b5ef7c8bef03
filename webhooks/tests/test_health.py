"""Endpoint health: a receiver that never answers turns its endpoint `failing` with the
right counts and one dashboard notice; a success makes it healthy again and resolves the
notice; members see notices, admins dismiss them; another organisation sees nothing.
Attempts run in-process against a local receiver (the network edge is real)."""

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from webhooks import services
from webhooks.models import WebhookNotice
from webhooks.tests.factories import endpoint_create

pytestmark = pytest.mark.django_db

ATTEMPTS = 4  # one delivery's cycle: the first try and the 5/25/125 s retries


@pytest.fixture
def sent(broker):
    """Retries handed to the broker are recorded, not sent: the test makes each attempt."""
    return broker.watch("webhooks.deliver")


@pytest.fixture
def down(receiver, settings):
    """The receiver accepts connections and never answers in time."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    receiver.answer(200, delay=0.6)
    return receiver


def _deliver_one_event() -> None:
    """Publish an event and make every attempt of its delivery (in-process, back to back)."""
    (delivery,) = services.webhook_publish(event_type="job.completed", data={})
    for _ in range(ATTEMPTS):
        services.webhook_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status in ("succeeded", "failed")


def _health(client, version: str, endpoint) -> dict:
    return client.get(f"/api/{version}/webhooks/{endpoint.pk}").json()["data"]["health"]


def _page_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_receiver_that_never_answers_makes_the_endpoint_failing_and_tells_once(world, down, sent, api_as):
    with tenant_context(world.org_a):
        endpoint, _ = endpoint_create(url=down.hook_url, events=["job.completed"])
        for _ in range(2):
            _deliver_one_event()
        # Two failed deliveries: counted, not yet news.
        health = _health(api_as(world.member_a), "v1", endpoint)
        assert health["status"] == "healthy"
        assert health["consecutive_failures"] == 2
        assert health["failing_since"] is not None
        assert "Timed out" in health["last_error"]
        assert not WebhookNotice.objects.exists()

        for _ in range(3):
            _deliver_one_event()
        endpoint.refresh_from_db()
        assert endpoint.active  # 5 < WEBHOOK_DISABLE_AFTER_FAILURES: still tried, now shown failing
        (notice,) = WebhookNotice.objects.all()
        assert notice.kind == "failing"
        assert "last 3 deliveries" in notice.message
        assert notice.resolved_at is None
        assert notice.dismissed_at is None
    for version in ("v1", "v2"):
        health = _health(api_as(world.member_a), version, endpoint)
        assert health == {
            "status": "failing",
            "failing_since": health["failing_since"],
            "consecutive_failures": 5,
            "last_error": "Timed out after 0.2 s.",
            "last_success_at": None,
        }
        assert health["failing_since"]
        listed = api_as(world.admin_a).get(f"/api/{version}/webhooks").json()["data"]
        assert [e["health"]["status"] for e in listed] == ["failing"]
    assert len(down.requests) == 5 * ATTEMPTS


def test_a_success_after_the_outage_makes_the_endpoint_healthy_and_resolves_the_notice(
    world, down, sent, api_as
):
    with tenant_context(world.org_a):
        endpoint, _ = endpoint_create(url=down.hook_url, events=["job.completed"])
        for _ in range(3):
            _deliver_one_event()
        assert _health(api_as(world.admin_a), "v1", endpoint)["status"] == "failing"

        down.answer(200)  # the receiver is back
        _deliver_one_event()
        health = _health(api_as(world.admin_a), "v2", endpoint)
        assert health["status"] == "healthy"
        assert health["consecutive_failures"] == 0
        assert health["failing_since"] is None
        assert health["last_success_at"] is not None
        (notice,) = WebhookNotice.objects.all()
        assert notice.resolved_at is not None
        assert "data-webhook-notice" not in _page_as(world.member_a).get("/").content.decode()

        # A later outage is news again: a second notice, not a reopened first one.
        down.answer(200, delay=0.6)
        for _ in range(3):
            _deliver_one_event()
        assert WebhookNotice.objects.filter(resolved_at__isnull=True).count() == 1
        assert WebhookNotice.objects.count() == 2


def test_disabling_after_failures_tells_once_more_and_re_enabling_resolves(
    world, down, sent, settings, api_as
):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 4
    with tenant_context(world.org_a):
        endpoint, _ = endpoint_create(url=down.hook_url, events=["job.completed"])
        for _ in range(4):
            _deliver_one_event()
        endpoint.refresh_from_db()
        assert not endpoint.active
        assert sorted(WebhookNotice.objects.values_list("kind", flat=True)) == ["disabled", "failing"]
        health = _health(api_as(world.member_a), "v1", endpoint)
        assert health["status"] == "disabled"
        assert health["consecutive_failures"] == 4

        services.webhook_endpoint_update(endpoint=endpoint, active=True)
        assert not WebhookNotice.objects.filter(resolved_at__isnull=True).exists()
        assert _health(api_as(world.member_a), "v1", endpoint)["status"] == "healthy"


def test_members_see_the_notice_and_only_admins_dismiss_it(world, down, sent):
    with tenant_context(world.org_a):
        endpoint, _ = endpoint_create(url=down.hook_url, events=["job.completed"])
        for _ in range(3):
            _deliver_one_event()
        notice = WebhookNotice.objects.get()

    member, admin = _page_as(world.member_a), _page_as(world.admin_a)
    dashboard = member.get("/").content.decode()
    assert 'data-webhook-notice="failing"' in dashboard
    assert endpoint.url in dashboard
    assert f"/webhooks/notices/{notice.pk}/dismiss" not in dashboard  # no button for members
    assert member.post(f"/webhooks/notices/{notice.pk}/dismiss").status_code == 403

    assert f"/webhooks/notices/{notice.pk}/dismiss" in admin.get("/").content.decode()
    done = admin.post(f"/webhooks/notices/{notice.pk}/dismiss", follow=True)
    assert done.status_code == 200
    assert "Notice dismissed." in done.content.decode()
    assert "data-webhook-notice" not in member.get("/").content.decode()
    with tenant_context(world.org_a):
        notice.refresh_from_db()
        assert notice.dismissed_at is not None
        assert notice.dismissed_by_id == world.admin_a.pk
        # Dismissed is not resolved: the endpoint is still failing, and says so.
        assert notice.resolved_at is None


def test_the_webhook_pages_show_the_endpoint_health(world, down, sent):
    with tenant_context(world.org_a):
        endpoint, _ = endpoint_create(url=down.hook_url, events=["job.completed"])
        for _ in range(3):
            _deliver_one_event()
    member = _page_as(world.member_a)
    for page in (member.get("/webhooks"), member.get(f"/webhooks/{endpoint.pk}")):
        html = page.content.decode()
        assert page.status_code == 200
        assert 'data-health="failing"' in html
        assert "3 failed deliveries in a row" in html
        assert "Last error: Timed out after 0.2 s." in html


def test_another_organisation_never_sees_or_dismisses_the_notice(world, down, sent, api_as):
    with tenant_context(world.org_a):
        endpoint, _ = endpoint_create(url=down.hook_url, events=["job.completed"])
        for _ in range(3):
            _deliver_one_event()
        notice = WebhookNotice.objects.get()

    other_admin = _page_as(world.admin_b)
    dashboard = other_admin.get("/").content.decode()
    assert "data-webhook-notice" not in dashboard
    assert endpoint.url not in dashboard
    assert other_admin.post(f"/webhooks/notices/{notice.pk}/dismiss").status_code == 404
    assert api_as(world.admin_b).get(f"/api/v1/webhooks/{endpoint.pk}").status_code == 404
    with tenant_context(world.org_a):
        notice.refresh_from_db()
        assert notice.dismissed_at is None


def test_deliveries_left_for_a_disabled_endpoint_keep_the_receivers_last_error(world, down, sent):
    with tenant_context(world.org_a):
        endpoint, _ = endpoint_create(url=down.hook_url, events=["job.completed"])
        _deliver_one_event()
        (delivery,) = services.webhook_publish(event_type="job.completed", data={})
        services.webhook_endpoint_update(endpoint=endpoint, active=False)
        attempt = services.webhook_attempt(delivery_id=delivery.pk)
        assert attempt.error.startswith("Endpoint disabled")
        endpoint.refresh_from_db()
        assert endpoint.last_error == "Timed out after 0.2 s."
        assert endpoint.consecutive_failures == 2
        # Switched off by an admin: not news for the dashboard.
        assert not WebhookNotice.objects.exists()
