"""ApiInputGuardMiddleware answers malformed /api/ requests (NUL in the path or query, a
body over the limit) before SecurityMiddleware and the CSP middleware, which sit after it in
MIDDLEWARE, so those answers leave without HSTS, the Content-Security-Policy and
X-Content-Type-Options that every other response over https carries."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"path": "/api/v1/jobs?search=a%00b"},
        {"path": "/api/v1/org", "method": "post", "body": b"x" * (1024 * 1024 + 1)},
    ],
    ids=["nul-in-query", "body-over-limit"],
)
def test_guard_refusals_carry_the_security_headers(client, request_kwargs):
    method = request_kwargs.get("method", "get")
    if method == "post":
        response = client.post(
            request_kwargs["path"], data=request_kwargs["body"], content_type="application/json", secure=True
        )
    else:
        response = client.get(request_kwargs["path"], secure=True)
    assert response.status_code in (413, 422)
    assert "Strict-Transport-Security" in response
    assert "Content-Security-Policy" in response
    assert response.get("X-Content-Type-Options") == "nosniff"
