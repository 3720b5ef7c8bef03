"""What the browser tests share: the password a test person signs in with, and signing in."""

from __future__ import annotations

PASSWORD = "a-long-unusual-passphrase"


def sign_in(page, server, org, path="/"):
    """Open `path` signed out, which lands on the sign-in form, and sign in from there."""
    page.goto(f"{server.url}{path}")
    page.get_by_label("Email").fill(org.admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
