"""The data page's source forms and file upload in a real browser: a source added, its file
uploaded in place (HTMX) and run by the worker, the source edited; and the upload without
JavaScript."""

import time

import pytest
from django_tenants.utils import tenant_context

from etl.samples import SAMPLE_DIR
from nexus.tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser

MAPPING = (
    '{"external_id": "Article ID", "title": "Headline", "body": "Body Text", '
    '"published_at": "Published On", "author": "Author Name", "tags": "Tags"}'
)


def _sources(org):
    from etl.models import DataSource

    with tenant_context(org):
        return list(DataSource.objects.all())


def _wait_for_run(org, timeout: float = 30):
    from etl.models import EtlRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with tenant_context(org):
            run = EtlRun.objects.order_by("-started_at").first()
        if run is not None and run.status in ("succeeded", "failed"):
            return run
        time.sleep(0.2)
    raise AssertionError("the run did not finish")


def _add_source(page, name: str) -> None:
    page.get_by_role("button", name="Add a source").click()
    page.locator("#id_name").fill(name)
    page.locator("#id_kind").select_option("csv")
    page.locator("#id_field_mapping").fill(MAPPING)
    page.get_by_role("button", name="Add source").click()
    page.wait_for_url("**/data")


def test_an_admin_adds_a_source_uploads_its_file_runs_it_and_edits_it(page, live_web, person):
    sign_in(page, live_web, person, path="/data")
    page.wait_for_url(f"{live_web.url}/data")
    _add_source(page, "Articles")
    assert page.get_by_text("Articles: source added. Upload its file below.").is_visible()

    page.evaluate("window.__notReloaded = true")
    page.get_by_label("File for Articles", exact=True).set_input_files(str(SAMPLE_DIR / "articles.csv"))
    page.get_by_role("button", name="Upload the file for Articles").click()
    page.locator("[data-upload-notice]").wait_for()
    assert "articles.csv uploaded" in page.locator("[data-upload-notice]").inner_text()
    assert page.evaluate("window.__notReloaded") is True  # swapped in place
    (source,) = _sources(person)
    assert source.file_key.startswith(f"{person.schema_name}/etl/{source.pk}/")

    page.get_by_role("button", name="Run now").click()
    run = _wait_for_run(person)
    assert run.status == "succeeded" and run.inserted == 7, run.error

    # A wrong file is refused in place, and the uploaded one stays.
    page.get_by_label("File for Articles", exact=True).set_input_files(
        files=[{"name": "notes.csv", "mimeType": "text/csv", "buffer": b"id,title\n1,caf\xe9\n"}]
    )
    page.get_by_role("button", name="Upload the file for Articles").click()
    page.locator("[data-upload-error]").wait_for()
    assert "not UTF-8 text (line 2)" in page.locator("[data-upload-error]").inner_text()
    assert _sources(person)[0].file_sha256 == source.file_sha256

    page.get_by_role("link", name="Edit Articles").click()
    page.locator("#id_name").fill("Articles (edited)")
    page.locator("#id_schedule_minutes").fill("15")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/data")
    assert page.get_by_text("Articles (edited): saved.").is_visible()
    (edited,) = _sources(person)
    assert (edited.name, edited.schedule_minutes, edited.file_key) == (
        "Articles (edited)",
        15,
        source.file_key,
    )


def test_the_form_shows_a_service_error_and_the_upload_works_without_javascript(
    page_without_javascript, live_web, person
):
    page = page_without_javascript
    sign_in(page, live_web, person, path="/data")
    page.wait_for_url(f"{live_web.url}/data")
    page.get_by_role("button", name="Add a source").click()
    page.locator("#id_name").fill("Probe")
    page.locator("#id_path").fill("../other/articles.csv")
    page.locator("#id_field_mapping").fill(MAPPING)
    page.get_by_role("button", name="Add source").click()
    assert "names no file in this organisation" in page.locator("[data-form-error]").inner_text()
    assert _sources(person) == []

    page.locator("#id_path").fill("")
    page.get_by_role("button", name="Add source").click()
    page.wait_for_url("**/data")
    page.get_by_label("File for Probe", exact=True).set_input_files(
        files=[{"name": "notes.csv", "mimeType": "text/csv", "buffer": b"\n1,2\n"}]
    )
    page.get_by_role("button", name="Upload the file for Probe").click()
    page.wait_for_url("**/data")
    assert page.get_by_text("The CSV has no header row (line 1).").is_visible()
    assert _sources(person)[0].file_key == ""
    page.get_by_label("File for Probe", exact=True).set_input_files(str(SAMPLE_DIR / "articles.csv"))
    page.get_by_role("button", name="Upload the file for Probe").click()
    page.wait_for_url("**/data")
    assert page.get_by_text("Probe: articles.csv uploaded").is_visible()
    assert _sources(person)[0].file_name == "articles.csv"
