"""The admin's operations page in a real browser: reached from the admin index, drawn with
no Content-Security-Policy violation (its charts are SVG styled by a stylesheet file, not
inline styles), and no wider than the window."""

import pytest
from django_tenants.utils import tenant_context

from nexus.tests.browser.helpers import sign_in
from nexus.tests.browser.test_csp_in_chromium import Violations
from nexus.tests.stub_server import StubServer

pytestmark = pytest.mark.browser


@pytest.fixture
def operator(person):
    """The live organisation's admin, made an operator, with an ETL source whose run failed
    (so the failure charts have a bar to draw)."""
    from etl.services import etl_run_source
    from etl.tests.factories import api_source_create

    person.admin.is_staff = person.admin.is_superuser = True
    person.admin.save(update_fields=["is_staff", "is_superuser"])
    with StubServer() as moved, tenant_context(person):
        moved.route_prefix("GET", "/", lambda request: (302, {"Location": "https://elsewhere.test/"}, ""))
        source = api_source_create(url=f"{moved.url}/items", name="Moved", requests_per_second=50)
        assert etl_run_source(source=source).status == "failed"
    return person


def test_operations_page_is_reached_from_the_admin_and_drawn_without_a_violation(page, live_web, operator):
    violations = Violations(page)
    sign_in(page, live_web, operator)
    page.wait_for_url(f"{live_web.url}/")
    assert violations.visit(f"{live_web.url}/admin/") == []
    page.get_by_role("link", name="Operations", exact=True).click()
    page.wait_for_url(f"{live_web.url}/admin/operations/")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__csp") + violations.console + violations.errors == []

    assert page.locator('[data-failures="etl_runs"] rect[data-value="1"]').count() == 1
    # The stylesheet colours the bars (an attribute alone would leave them the text colour).
    fill, text = page.eval_on_selector(
        'rect.failure[data-value="1"]', "e => [getComputedStyle(e).fill, getComputedStyle(e).color]"
    )
    assert fill != text
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1]
