"""The pages in a real browser on a phone-sized screen, without JavaScript, and around the
buttons that destroy something: nothing sticks out sideways, nothing overlaps, and nothing
is removed without a second "yes"."""

import pytest
from django_tenants.utils import tenant_context

from nexus.tests.browser.helpers import sign_in
from webhooks.events import EVENT_TYPES

pytestmark = pytest.mark.browser

PAGES = [
    "/",
    "/jobs",
    "/audits",
    "/members",
    "/webhooks",
    "/billing",
    "/data",
    "/api-access",
    "/api-keys",
    "/audit-log",
]
LONG_URL = "http://127.0.0.1:9/hooks/a-receiver-path-long-enough-to-wrap-on-a-phone-screen"


@pytest.fixture
def busy_person(person):
    """An organisation with something on every page: a second member with long names,
    a webhook endpoint with a long URL, a data source that has run, credits and a job."""
    from etl.samples import ARTICLES_CSV_MAPPING, sample_source_create
    from etl.services import etl_run_source
    from tenants.services import user_create
    from webhooks.services import webhook_endpoint_create

    person.grant(100)
    person.colleague = user_create(
        email=f"someone.with.a.long.address@{person.email_domain}",
        organisation=person,
        role="member",
        name="Someone With A Rather Long Name",
    )
    with tenant_context(person):
        person.endpoint, _ = webhook_endpoint_create(
            url=LONG_URL, event_types=["job.completed"], description="The receiver"
        )
        source = sample_source_create(
            name="Sample CSV", kind="csv", sample="articles.csv", field_mapping=ARTICLES_CSV_MAPPING
        )
        etl_run_source(source=source)
    return person


def overlaps(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_no_page_is_wider_than_a_phone(phone, live_web, busy_person):
    sign_in(phone, live_web, busy_person)
    phone.wait_for_url(f"{live_web.url}/")
    for path in PAGES:
        phone.goto(f"{live_web.url}{path}")
        widths = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[1] == 390
        assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide on a 390 px screen"


def test_member_actions_fit_on_a_phone(phone, live_web, busy_person):
    sign_in(phone, live_web, busy_person, path="/members")
    phone.wait_for_url(f"{live_web.url}/members")
    for control in (
        phone.get_by_label(f"Role of {busy_person.colleague.email}"),
        phone.get_by_role("button", name="Save role").first,
        phone.get_by_role("button", name=f"Remove {busy_person.colleague.email}"),
    ):
        box = control.bounding_box()
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390
    # Each row is a card whose cells say what they are.
    assert (
        phone.evaluate("getComputedStyle(document.querySelector('tbody td'), '::before').content")
        == '"Email"'
    )


def test_a_wide_table_on_a_phone_says_it_scrolls(phone, live_web, busy_person):
    sign_in(phone, live_web, busy_person, path="/data")
    phone.wait_for_url(f"{live_web.url}/data")
    hints = phone.locator(".scroll-hint")
    hints.first.wait_for(state="visible")
    assert "Scroll sideways" in hints.first.inner_text()
    scroller = phone.locator(".table-scroll[aria-labelledby=records-heading]")
    assert scroller.get_attribute("tabindex") == "0"  # reachable, and scrollable, by keyboard
    scroller.focus()
    phone.keyboard.press("ArrowRight")
    phone.wait_for_function(
        "() => document.querySelector('.table-scroll[aria-labelledby=records-heading]').scrollLeft > 0"
    )


def test_webhook_event_examples_open_without_widening_a_phone_page(phone, live_web, busy_person):
    sign_in(phone, live_web, busy_person, path="/webhooks")
    phone.wait_for_url(f"{live_web.url}/webhooks")
    examples = phone.locator("[data-event-types] details")
    assert examples.count() == len(EVENT_TYPES)
    for index in range(examples.count()):
        examples.nth(index).locator("summary").click()
        assert examples.nth(index).locator("pre").is_visible()
    widths = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == 390, f"/webhooks is {widths[0]} px wide with its examples open"


@pytest.mark.parametrize("width", [390, 1200])
def test_webhook_event_descriptions_do_not_overlap_their_labels(chromium, live_web, busy_person, width):
    context = chromium.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, live_web, busy_person, path="/webhooks")
        page.wait_for_url(f"{live_web.url}/webhooks")
        labels = page.locator("fieldset label")
        hints = page.locator("fieldset [data-choice-hint]")
        assert labels.count() == hints.count() >= 3
        boxes = []
        for index in range(labels.count()):
            boxes.append(labels.nth(index).bounding_box())
            boxes.append(hints.nth(index).bounding_box())
        for index, box in enumerate(boxes):
            for other in boxes[index + 1 :]:
                assert not overlaps(box, other), (box, other)
            assert box["x"] + box["width"] <= width
        # Each description is read out with its checkbox.
        first = page.get_by_role("checkbox").first
        assert page.locator(f"#{first.get_attribute('aria-describedby')}").inner_text() != ""
    finally:
        context.close()


def test_removing_a_member_asks_first(page, live_web, busy_person):
    from tenants.models import User

    sign_in(page, live_web, busy_person, path="/members")
    page.wait_for_url(f"{live_web.url}/members")
    remove = page.get_by_role("button", name=f"Remove {busy_person.colleague.email}")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    remove.click()
    page.wait_for_timeout(500)
    assert busy_person.colleague.email in questions[0]
    assert User.objects.get(pk=busy_person.colleague.pk).is_active

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    remove.click()
    page.get_by_text("Member removed.").wait_for()
    colleague = User.objects.get(pk=busy_person.colleague.pk)
    assert not colleague.is_active
    assert colleague.organisation_id is None


def test_deleting_a_webhook_asks_first_without_javascript(page_without_javascript, live_web, busy_person):
    from webhooks.models import WebhookEndpoint

    page = page_without_javascript
    sign_in(page, live_web, busy_person, path="/webhooks")
    page.wait_for_url(f"{live_web.url}/webhooks")
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("heading", name="Delete a webhook endpoint").wait_for()
    assert LONG_URL in page.locator("main").inner_text()
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(f"{live_web.url}/webhooks")
    with tenant_context(busy_person):
        assert WebhookEndpoint.objects.filter(pk=busy_person.endpoint.pk).exists()

    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Delete endpoint").click()
    page.get_by_text("Endpoint deleted.").wait_for()
    with tenant_context(busy_person):
        assert not WebhookEndpoint.objects.filter(pk=busy_person.endpoint.pk).exists()


def test_a_job_sent_without_javascript_keeps_the_text_out_of_the_address(
    page_without_javascript, live_web, busy_person
):
    page = page_without_javascript
    sign_in(page, live_web, busy_person, path="/jobs")
    page.wait_for_url(f"{live_web.url}/jobs")
    page.get_by_label("Text to process").fill("Private words stay in the body.")
    page.get_by_role("button", name="Summarise — 10 credits").click()
    page.wait_for_url(f"{live_web.url}/jobs?job=*")
    assert "Private" not in page.url
    assert "csrf" not in page.url
    assert page.get_by_role("heading", name="Jobs").is_visible()
    assert page.locator("#job-result[data-job-id]").is_visible()
    for _ in range(40):  # no polling without JavaScript: the person reloads
        if page.locator("[data-job-output]").count():
            break
        page.wait_for_timeout(500)
        page.get_by_role("link", name="Reload").click()
    assert "A stand-in summary." in page.locator("[data-job-output]").inner_text()
