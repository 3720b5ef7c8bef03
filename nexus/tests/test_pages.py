"""Pages for people, through Django's test client (the browser tests drive the same pages
in Chromium)."""

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billing.services import credits_grant
from jobs import tasks
from webhooks.events import SUBSCRIBABLE_EVENTS
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

PAGES = ["/", "/jobs", "/audits", "/members", "/webhooks", "/billing", "/data", "/api-access"]


@pytest.fixture
def member(world):
    client = Client()
    client.force_login(world.member_a)
    return client


@pytest.fixture
def admin(world):
    client = Client()
    client.force_login(world.admin_a)
    return client


@pytest.fixture
def no_tasks(broker):
    return broker


@pytest.mark.parametrize("path", PAGES)
def test_signed_out_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_htmx_requests_without_a_session_redirect_the_whole_page(client):
    response = client.get("/partials/balance", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("current_url", "expected_next"),
    [
        ("http://testserver/", "/"),
        ("http://testserver/jobs", "/jobs"),
        ("http://testserver/data?search=launch%20day", "/data%3Fsearch%3Dlaunch%2520day"),
        # The header is the client's word: another host, or a scheme trick, is the dashboard.
        ("https://evil.example/jobs", "/"),
        ("//evil.example/jobs", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_an_expired_session_sends_htmx_back_to_the_page_not_the_fragment(client, current_url, expected_next):
    headers = {"HTTP_HX_REQUEST": "true"}
    if current_url:
        headers["HTTP_HX_CURRENT_URL"] = current_url
    for fragment in ("/partials/balance", "/jobs/00000000-0000-0000-0000-000000000000/result"):
        response = client.get(fragment, **headers)
        assert response.status_code == 200
        assert response["HX-Redirect"] == f"/accounts/login/?next={expected_next}"
    submitted = client.post("/jobs/submit", {"text": "x", "job_type": "summarize"}, **headers)
    assert submitted["HX-Redirect"] == f"/accounts/login/?next={expected_next}"


@pytest.mark.parametrize(
    ("referer", "expected_next"),
    [
        ("http://testserver/jobs", "/jobs"),
        ("http://testserver/data?search=q", "/data%3Fsearch%3Dq"),
        ("https://evil.example/jobs", "/"),
        (None, "/"),
    ],
)
def test_an_expired_session_on_a_form_post_comes_back_to_the_form_page(client, referer, expected_next):
    """Not to the POST-only action, which would answer 405 after signing in again."""
    headers = {"HTTP_REFERER": referer} if referer else {}
    for action in ("/jobs/submit", "/members/00000000-0000-0000-0000-000000000000", "/data/records/1/job"):
        response = client.post(action, {"text": "x", "job_type": "summarize"}, **headers)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={expected_next}"


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_a_member(member, path, world):
    response = member.get(path)
    assert response.status_code == 200
    content = response.content.decode()
    assert "/static/vendor/pico/pico.min.css" in content
    assert "/static/vendor/htmx/htmx.min.js" in content
    assert 'id="main"' in content


def test_sign_in_page_offers_email_and_password(client):
    page = client.get("/accounts/login/").content.decode()
    assert 'name="login"' in page
    assert 'name="password"' in page
    assert "<label" in page


def test_password_sign_in_lands_on_the_dashboard(client, world):
    world.member_a.set_password("a-long-unusual-passphrase")
    world.member_a.save()
    response = client.post(
        "/accounts/login/", {"login": "member@org-a.test", "password": "a-long-unusual-passphrase"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert "Org A" in client.get("/").content.decode()


def test_dashboard_shows_balance_transactions_and_a_labelled_chart(member, world):
    with tenant_context(world.org_a):
        credits_grant(amount=77, reason="welcome", actor_label="operator:tests")
    page = member.get("/").content.decode()
    assert "<span data-balance>77</span>" in page
    assert "welcome" in page
    assert page.count('class="bar"') == 7
    assert '<title id="chart-title">Credits spent per day</title>' in page
    assert 'hx-trigger="every 30s"' in page


def test_balance_partial(member, world):
    with tenant_context(world.org_a):
        credits_grant(amount=5, reason="x", actor_label="operator:tests")
    fragment = member.get("/partials/balance", HTTP_HX_REQUEST="true").content.decode()
    assert "<span data-balance>5</span>" in fragment
    assert "data-stale-warning" in fragment


def test_submitting_a_job_answers_a_polling_panel_then_the_result(member, world, no_tasks):
    with tenant_context(world.org_a):
        credits_grant(amount=100, reason="x", actor_label="operator:tests")
    panel = member.post(
        "/jobs/submit",
        {"text": "Hello there. A short text.", "job_type": "summarize"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "data-job-active" in panel
    assert 'hx-trigger="every 2s"' in panel
    assert "aria-busy" in panel
    job_id = panel.split('data-job-id="')[1].split('"')[0]
    with tenant_context(world.org_a):
        tasks.run_job(job_id)
    done = member.get(f"/jobs/{job_id}/result?shown=pending", HTTP_HX_REQUEST="true").content.decode()
    assert "data-job-active" not in done
    assert "hx-trigger" not in done.split("</div>")[0]
    assert "data-job-output" in done
    assert 'hx-swap-oob="true"' in done


def test_the_history_shows_a_new_job_at_once_and_each_change_of_its_status(member, world, no_tasks):
    with tenant_context(world.org_a):
        credits_grant(amount=100, reason="x", actor_label="operator:tests")
    panel = member.post(
        "/jobs/submit", {"text": "Put me in the history.", "job_type": "summarize"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    history = panel.split('id="job-history"')[1]
    assert 'hx-swap-oob="true"' in history
    assert "pending" in history
    assert "No jobs yet" not in history
    job_id = panel.split('data-job-id="')[1].split('"')[0]
    assert f"/jobs/{job_id}/result?shown=pending" in panel
    # A poll that sees the status the page already shows sends no history; a change does.
    same = member.get(f"/jobs/{job_id}/result?shown=pending", HTTP_HX_REQUEST="true").content.decode()
    assert "job-history" not in same
    with tenant_context(world.org_a):
        from jobs.models import Job

        Job.objects.filter(pk=job_id).update(status="running")
    changed = member.get(f"/jobs/{job_id}/result?shown=pending", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="job-history" aria-labelledby="history-heading" hx-swap-oob="true"' in changed
    assert "?shown=running" in changed


def test_not_enough_credits_says_so_and_links_to_billing(member, no_tasks):
    fragment = member.post(
        "/jobs/submit", {"text": "Hi.", "job_type": "analyze"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "Not enough credits" in fragment
    assert 'href="/billing"' in fragment


def test_invalid_job_input_is_explained(member, no_tasks):
    fragment = member.post(
        "/jobs/submit", {"text": "   ", "job_type": "summarize"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "required" in fragment


def test_the_jobs_form_posts_even_without_javascript(member):
    page = member.get("/jobs").content.decode()
    assert '<form method="post" action="/jobs/submit"' in page
    assert 'hx-post="/jobs/submit"' in page
    # Every job button is disabled while the form is sent, not only the first one.
    assert 'hx-disabled-elt="[data-job-button]"' in page
    assert page.count("data-job-button") == 3


def test_a_job_sent_without_javascript_lands_on_the_jobs_page_showing_it(member, world, no_tasks):
    with tenant_context(world.org_a):
        credits_grant(amount=100, reason="x", actor_label="operator:tests")
    response = member.post("/jobs/submit", {"text": "No scripts here.", "job_type": "summarize"})
    assert response.status_code == 302
    assert response["Location"].startswith("/jobs?job=")
    page = member.get(response["Location"]).content.decode()
    job_id = response["Location"].split("=")[1]
    assert "<h1>Jobs</h1>" in page
    assert f'data-job-id="{job_id}"' in page
    assert "pending" in page
    assert "/static/vendor/pico/pico.min.css" in page
    # A stale or foreign link is just the page.
    assert member.get("/jobs?job=00000000-0000-0000-0000-000000000000").status_code == 200
    assert member.get("/jobs?job=not-a-uuid").status_code == 200


def test_a_refused_job_without_javascript_shows_the_page_again_with_the_reason(member, world, no_tasks):
    response = member.post("/jobs/submit", {"text": "Too poor to analyse.", "job_type": "analyze"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Jobs</h1>" in page
    assert "Not enough credits" in page
    assert 'href="/billing"' in page
    assert ">Too poor to analyse.</textarea>" in page
    invalid = member.post("/jobs/submit", {"text": "  ", "job_type": "summarize"}).content.decode()
    assert "required" in invalid
    assert 'aria-invalid="true"' in invalid
    with tenant_context(world.org_a):
        from jobs.models import Job

        assert Job.objects.count() == 0


@pytest.mark.parametrize("htmx", [True, False])
def test_an_unknown_job_result_is_a_404_not_a_server_error(member, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = member.get("/jobs/00000000-0000-0000-0000-000000000000/result", **headers)
    assert response.status_code == 404
    assert "No such job." in response.content.decode()


def test_another_organisations_job_result_is_a_404(member, world, no_tasks):
    with tenant_context(world.org_b):
        credits_grant(amount=100, reason="x", actor_label="operator:tests")
        from jobs.services import job_create

        job = job_create(user=world.member_b, job_type="summarize", text="Org B's own text.")
    assert member.get(f"/jobs/{job.pk}/result", HTTP_HX_REQUEST="true").status_code == 404


def test_members_page_admin_changes_roles_and_last_admin_is_protected(admin, member, world):
    assert b"Save role" not in member.get("/members").content
    response = admin.post(f"/members/{world.admin_a.pk}", {"role": "member"}, follow=True)
    assert "last admin" in response.content.decode()
    admin.post(f"/members/{world.member_a.pk}", {"role": "admin"})
    world.member_a.refresh_from_db()
    assert world.member_a.role == "admin"
    assert member.post(f"/members/{world.admin_a.pk}", {"role": "member"}).status_code in (302, 403)


def test_removing_a_member_asks_first_even_without_javascript(admin, world):
    page = admin.get("/members").content.decode()
    assert "data-confirm=" in page
    asked = admin.post(f"/members/{world.member_a.pk}", {"action": "remove", "role": "member"})
    content = asked.content.decode()
    assert asked.status_code == 200
    assert "Remove member@org-a.test from Org A?" in content
    assert 'name="confirmed" value="remove"' in content
    assert 'href="/members"' in content
    world.member_a.refresh_from_db()
    assert world.member_a.is_active
    assert world.member_a.organisation_id == world.org_a.pk

    done = admin.post(
        f"/members/{world.member_a.pk}", {"action": "remove", "confirmed": "remove"}, follow=True
    )
    assert "Member removed." in done.content.decode()
    world.member_a.refresh_from_db()
    assert not world.member_a.is_active
    assert world.member_a.organisation_id is None


def test_removing_someone_not_in_the_organisation_is_a_404(admin, world):
    assert admin.post(f"/members/{world.member_b.pk}", {"action": "remove"}).status_code == 404


def test_member_cannot_post_admin_forms(member, world):
    assert member.post("/webhooks/create", {"url": "http://127.0.0.1:9/x"}).status_code == 403
    assert member.post("/billing/buy", {"pack": "x"}).status_code == 403


def test_webhook_registration_shows_the_secret_once(admin, world):
    response = admin.post(
        "/webhooks/create", {"url": "http://127.0.0.1:9/hook", "event_types": ["job.completed"]}, follow=True
    )
    page = response.content.decode()
    assert "data-webhook-secret>whsec_" in page
    assert "whsec_" not in admin.get("/webhooks").content.decode()
    with tenant_context(world.org_a):
        endpoint = WebhookEndpoint.objects.get()
    assert admin.get(f"/webhooks/{endpoint.pk}").status_code == 200


def test_deleting_a_webhook_endpoint_asks_first_and_goes_through_the_service(admin, world, caplog):
    import logging

    from webhooks.services import webhook_endpoint_create

    with tenant_context(world.org_a):
        endpoint, _ = webhook_endpoint_create(url="http://127.0.0.1:9/hook", event_types=["job.completed"])
    assert "data-confirm=" in admin.get("/webhooks").content.decode()
    asked = admin.post(f"/webhooks/{endpoint.pk}/action", {"action": "delete"})
    assert asked.status_code == 200
    assert "Delete the endpoint http://127.0.0.1:9/hook" in asked.content.decode()
    with tenant_context(world.org_a):
        assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()

    caplog.set_level(logging.INFO, logger="webhooks.services")
    done = admin.post(
        f"/webhooks/{endpoint.pk}/action", {"action": "delete", "confirmed": "delete"}, follow=True
    )
    assert "Endpoint deleted." in done.content.decode()
    with tenant_context(world.org_a):
        assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert any(
        isinstance(r.msg, dict) and r.msg.get("event") == "webhook.endpoint_deleted" for r in caplog.records
    )


def test_webhook_event_descriptions_are_not_pulled_into_their_checkbox_labels(admin):
    page = admin.get("/webhooks").content.decode()
    events = page.split("<legend>Events</legend>")[1].split("</fieldset>")[0]
    # Pico gives a <small> that follows an input a negative top margin.
    assert "<small" not in events
    assert events.count("data-choice-hint") == len(SUBSCRIBABLE_EVENTS)


def test_billing_without_keys_says_it_is_not_configured(admin):
    page = admin.get("/billing").content.decode()
    assert "Billing is not configured" in page
    assert "Buy Starter" not in page


def test_data_page_lists_sources_and_queues_runs(admin, world, broker, django_capture_on_commit_callbacks):
    from etl.samples import ARTICLES_CSV_MAPPING as CSV_MAPPING
    from etl.samples import sample_source_create

    sent = broker.watch("etl.execute_run")
    with tenant_context(world.org_a):
        source = sample_source_create(
            name="Sample CSV", kind="csv", sample="articles.csv", field_mapping=CSV_MAPPING
        )
    assert "Sample CSV" in admin.get("/data").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/data/sources/{source.pk}/run", follow=True)
    assert "run queued" in response.content.decode()
    assert len(sent) == 1


def test_a_token_cannot_lend_its_organisation_to_another_session(world):
    """Signed in as org A's admin, with org B's member token: pages must not act on B."""
    from tenants.tests.helpers import bearer_for

    client = Client()
    client.force_login(world.admin_a)
    response = client.post(
        f"/members/{world.member_b.pk}",
        {"role": "admin"},
        HTTP_AUTHORIZATION=f"Bearer {bearer_for(world.member_b)}",
    )
    world.member_b.refresh_from_db()
    assert world.member_b.role == "member"
    assert response.status_code in (302, 404)
