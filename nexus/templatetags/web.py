"""Template helpers for the pages."""

from __future__ import annotations

from django import template

from nexus.net import web_url

register = template.Library()


@register.filter
def http_url(value) -> str:
    """The value if it is an http(s) link, else empty: an href from outside data must never
    be a `javascript:` URL (the ETL already drops them; this guards the page too)."""
    return (web_url(str(value)) or "") if value else ""
