"""Operators sign in to the admin through allauth's throttled form, never through Django's
unthrottled admin login. The failed-login counts live in the real Redis cache."""

import itertools
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from tenants.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "operator-password-123"  # nosec B105
_addresses = itertools.count(1)


@pytest.fixture
def browser():
    """A client from an address of its own (TEST-NET-3): allauth also counts failures per
    client address, and tests must not spend each other's budget."""
    return Client(REMOTE_ADDR=f"203.0.113.{next(_addresses) % 250 + 1}")


@pytest.fixture
def operator():
    return User.objects.create_superuser(f"root-{uuid.uuid4().hex[:8]}@nexus.test", PASSWORD)


def _sign_in(client, email, password, next_url="/admin/"):
    return client.post("/accounts/login/", {"login": email, "password": password, "next": next_url})


def test_admin_login_page_sends_operators_to_the_allauth_form(browser):
    response = browser.get("/admin/login/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/accounts/login/"
    assert parse_qs(location.query) == {"next": ["/admin/"]}
    form = browser.get(response["Location"]).content.decode()
    assert 'name="login"' in form
    assert 'name="password"' in form


def test_unauthenticated_admin_request_ends_on_the_allauth_form(browser):
    response = browser.get("/admin/tenants/organisation/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/?next=%2Fadmin%2Ftenants%2Forganisation%2F"
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


def test_admin_login_ignores_a_next_pointing_elsewhere(browser):
    response = browser.get("/admin/login/", {"next": "https://evil.example/admin/"})
    assert parse_qs(urlsplit(response["Location"]).query) == {"next": ["/admin/"]}


def test_admin_login_form_no_longer_takes_passwords(browser, operator):
    response = browser.post("/admin/login/", {"username": operator.email, "password": PASSWORD})
    assert response.status_code == 405
    assert "_auth_user_id" not in browser.session


def test_correct_operator_sign_in_reaches_the_admin(browser, operator):
    response = _sign_in(browser, operator.email, PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    admin_index = browser.get("/admin/")
    assert admin_index.status_code == 200
    assert "Organisations and users" in admin_index.content.decode()


def test_twelve_wrong_operator_passwords_are_throttled_from_the_sixth(browser, operator):
    outcomes = []
    for _ in range(12):
        page = _sign_in(browser, operator.email, "wrong-password-guess").content.decode()
        outcomes.append("throttled" if "Too many failed login attempts" in page else "refused")
    assert outcomes == ["refused"] * 5 + ["throttled"] * 7
    # While throttled, even the right password does not get in.
    response = _sign_in(browser, operator.email, PASSWORD)
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert browser.get("/admin/").status_code == 302


def test_failures_from_one_address_are_throttled_across_emails(browser, operator):
    outcomes = []
    for attempt in range(12):
        page = _sign_in(browser, f"guess-{attempt}@nexus.test", "wrong-password-guess").content.decode()
        outcomes.append("throttled" if "Too many failed login attempts" in page else "refused")
    assert outcomes == ["refused"] * 10 + ["throttled"] * 2


def test_signed_in_non_operator_gets_a_403_not_a_redirect_loop(client, world):
    client.force_login(world.admin_a)
    response = client.get("/admin/login/", {"next": "/admin/"})
    assert response.status_code == 403
    assert "not an operator account" in response.content.decode()
