"""No secret and no personal data in the logs: a whole flow (session sign-in, API tokens and
their refresh, a failed operator sign-in, a job whose text names a person, a webhook
endpoint with its signing secret, an ETL source with an API key, a Stripe purchase) runs
with the production JSON log format captured, and the captured lines are searched for
every secret and address involved."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from billing.public.models import CreditPack
from billing.tests.stripe_stub import WEBHOOK_SECRET, StripeStub, event, signed
from etl.mock_api import MockApi
from etl.models import DataSource
from etl.services import etl_run_source
from etl.tests.conftest import API_MAPPING
from jobs import services as job_services
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_attempt

pytestmark = pytest.mark.django_db

STRIPE_KEY = "sk_test_logcheck0123456789"
ETL_KEY = "etl-source-key-4f1c2b9e"
OPERATOR_PASSWORD = "wrong-password-7d1e0a"  # nosec B105 - a test value
THIRD_PARTY_EMAIL = "jane.doe@example.org"


@pytest.fixture
def json_logs():
    """Everything logged during the test, rendered as production renders it."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # the production level
    yield buffer
    root.removeHandler(handler)
    root.setLevel(previous_level)


def test_a_full_flow_logs_no_secret_and_no_address(world, json_logs, broker, settings):
    secrets: dict[str, str] = {}
    settings.ETL_ALLOW_PRIVATE = True

    # Session sign-in, then API tokens for it, then a refresh.
    browser = Client()
    browser.force_login(world.admin_a)
    secrets["session"] = browser.cookies["sessionid"].value
    issued = browser.post("/api/v1/auth/token")
    assert issued.status_code == 200, issued.content
    secrets["access"] = issued.json()["data"]["access"]
    refresh_cookie = next(c for c in issued.cookies.values() if "refresh" in c.key)
    secrets["refresh"] = refresh_cookie.value
    refreshed = browser.post(refresh_cookie["path"].rstrip("/") + "/refresh")
    assert refreshed.status_code == 200, refreshed.content

    # An operator signs in with the wrong password.
    Client().post("/accounts/login/", {"login": world.admin_a.email, "password": OPERATOR_PASSWORD})

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secrets['access']}")

    # A job whose text names a person, run to completion.
    with tenant_context(world.org_a):
        from billing.services import credits_grant

        credits_grant(amount=100, reason="test", actor_label="operator:tests")
    job = api.post(
        "/api/v1/summarize", {"text": f"Call {THIRD_PARTY_EMAIL} about the renewal."}, format="json"
    )
    assert job.status_code == 202, job.content
    with tenant_context(world.org_a):
        job_services.job_run(job_id=job.json()["data"]["id"])

    # A webhook endpoint (its secret is shown once) and a delivery to a receiver.
    with MockApi(api_key=ETL_KEY, items=5) as receiver:
        endpoint = api.post(
            "/api/v1/webhooks",
            {"url": f"{receiver.url}/hook", "event_types": ["job.completed"]},
            format="json",
        )
        assert endpoint.status_code == 201, endpoint.content
        secrets["webhook"] = endpoint.json()["data"]["secret"]
        api.post(f"/api/v1/webhooks/{endpoint.json()['data']['id']}/test")
        with tenant_context(world.org_a):
            for delivery in WebhookDelivery.objects.all():
                webhook_attempt(delivery_id=delivery.pk)

        # An ETL source with an API key, run.
        source = api.post(
            "/api/v1/etl/sources",
            {"name": "Items", "kind": "api", "config": {"url": receiver.url}, "api_key": ETL_KEY,
             "field_mapping": API_MAPPING},
            format="json",
        )  # fmt: skip
        assert source.status_code == 201, source.content
        with tenant_context(world.org_a):
            run = etl_run_source(source=DataSource.objects.get(pk=source.json()["data"]["id"]))
        assert run.status == "succeeded", run.error

    # A Stripe purchase: checkout, then the signed webhook that pays it.
    with StripeStub() as stripe:
        settings.STRIPE_SECRET_KEY = STRIPE_KEY
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = stripe.url
        pack = CreditPack.objects.get(credits=500)
        checkout = api.post("/api/v1/billing/checkout", {"pack": str(pack.pk)}, format="json")
        assert checkout.status_code == 201, checkout.content
        session_id = next(iter(stripe.sessions))
        body, signature = signed(event("checkout.session.completed", stripe.pay(session_id)))
        paid = Client().post(
            "/stripe/webhook", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
        )
        assert paid.status_code == 200, paid.content
        secrets["stripe-signature"] = signature.split("v1=")[-1]

    logs = json_logs.getvalue()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert len(lines) > 20  # the flow was logged
    for name, value in {
        **secrets,
        "stripe key": STRIPE_KEY,
        "stripe webhook secret": WEBHOOK_SECRET,
        "etl key": ETL_KEY,
        "operator password": OPERATOR_PASSWORD,
        "member email": world.admin_a.email,
        "third-party email": THIRD_PARTY_EMAIL,
    }.items():
        assert value not in logs, f"the {name} appears in the logs"
    assert all("severity" in line for line in lines)
