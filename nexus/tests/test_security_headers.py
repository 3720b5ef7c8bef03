"""Transport and content headers: HSTS on every secure response, and one
Content-Security-Policy ('self' only) on pages, API, admin, docs and errors, which no
template may need to weaken (no inline script, handler or style anywhere)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

pytestmark = pytest.mark.django_db

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
YEAR = 365 * 24 * 3600


@pytest.fixture
def signed_in(world):
    client = Client()
    client.force_login(world.admin_a)
    return client


@pytest.mark.parametrize("path", ["/health", "/", "/api/v1/org", "/api/docs/", "/admin/login/", "/nowhere"])
def test_hsts_on_every_secure_response(client, path):
    response = client.get(path, secure=True)
    assert response["Strict-Transport-Security"] == f"max-age={YEAR}; includeSubDomains"


def test_no_hsts_over_plain_http(client):
    assert "Strict-Transport-Security" not in client.get("/health")


def test_hsts_follows_the_forwarded_scheme_behind_a_tls_proxy(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client.get("/health", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == f"max-age={YEAR}; includeSubDomains"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/jobs",
        "/data",
        "/webhooks",
        "/billing",
        "/members",
        "/api-access",
        "/api/v1/org",
        "/api/v1/nowhere",
        "/api/docs/",
        "/api/docs/?script",
        "/api/docs/v2/",
        "/api/schema/",
        "/admin/login/",
        "/accounts/login/",
        "/health",
        "/no-such-page",
    ],
)
def test_every_response_carries_the_content_security_policy(signed_in, path):
    response = signed_in.get(path)
    assert response.status_code < 500
    assert response["Content-Security-Policy"] == POLICY


def test_swagger_ui_has_no_inline_script_or_style(client):
    page = client.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts
    assert all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in page
    assert "/api/docs/?script=" in page
    init = client.get("/api/docs/?script=")
    assert init.status_code == 200
    assert init["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in init.content.decode()
    assert '"validatorUrl": null' in init.content.decode()


# Emails (templates/*/email/) are read in mail clients, not served under the CSP; mail
# clients need inline styles, and emails never carry scripts (checked below).
TEMPLATES = sorted(
    path for path in Path(django_settings.BASE_DIR, "templates").rglob("*.html") if "email" not in path.parts
)
EMAIL_TEMPLATES = sorted(Path(django_settings.BASE_DIR, "templates").rglob("email/*.html"))


@pytest.mark.parametrize(
    "template", EMAIL_TEMPLATES, ids=lambda p: str(p.relative_to(django_settings.BASE_DIR))
)
def test_no_email_carries_a_script_or_a_handler(template):
    text = template.read_text()
    assert not re.search(r"<script\b", text, flags=re.I)
    assert not re.search(r"\son[a-z]+\s*=", text, flags=re.I)
    assert "javascript:" not in text.lower()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(django_settings.BASE_DIR)))
def test_no_template_needs_inline_script_handlers_or_styles(template):
    # Template comments may speak of what they avoid; only the markup counts.
    # ({# #} ends on its own line: Django prints a {# that spans lines as text.)
    text = re.sub(r"\{% comment %\}.*?\{% endcomment %\}", "", template.read_text(), flags=re.S)
    text = re.sub(r"\{#.*?#\}", "", text)
    assert "{#" not in text, f"a comment spanning lines in {template.name} is printed as text"
    for attributes, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", text, flags=re.S | re.I):
        assert "src=" in attributes and not body.strip(), f"inline script in {template.name}"
    assert not re.search(r"<style\b", text, flags=re.I), f"<style> in {template.name}"
    assert not re.search(r"\sstyle\s*=", text, flags=re.I), f"style attribute in {template.name}"
    assert not re.search(r"\son[a-z]+\s*=", text, flags=re.I), f"on* handler in {template.name}"
    assert "javascript:" not in text.lower()
    assert not re.search(r"hx-on|hx-vars|[\"']js:", text), f"evaluated HTMX attribute in {template.name}"
