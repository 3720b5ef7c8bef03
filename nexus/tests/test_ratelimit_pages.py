"""Pages that cost money or work count against the organisation's one rate-limit budget
(shared with the API), and the routes with no caller yet (Google sign-in, Stripe's
webhook) have per-address budgets. Over the limit a page is a friendly 429 and nothing is
charged, created or started."""

from __future__ import annotations

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billing.models import Purchase
from billing.public.models import CreditPack, StripeEvent
from billing.selectors import credits_balance
from billing.services import credits_grant
from billing.tests.stripe_stub import WEBHOOK_SECRET, StripeStub, event, signed
from etl.mock_api import MockApi
from etl.models import Record
from etl.samples import MOCK_API_MAPPING
from etl.services import etl_run_source, etl_source_create
from jobs.models import Job
from nexus.redis import get_redis, redis_key

pytestmark = pytest.mark.django_db

LIMIT = 3


@pytest.fixture
def budget(world):
    """Organisation A with a small budget, its admin signed in on a page client; the
    organisation's counter is empty before and removed after."""
    org = world.org_a
    org.api_rate_limit = LIMIT
    org.save(update_fields=["api_rate_limit"])
    key = redis_key("ratelimit", str(org.id))
    get_redis().delete(key)
    with tenant_context(org):
        credits_grant(amount=1000, reason="test funding", actor_label="operator:tests")
    client = Client()
    client.force_login(world.admin_a)
    yield client
    get_redis().delete(key)


@pytest.fixture
def no_broker(broker):
    return broker


def _spend(client, count: int) -> None:
    """Use `count` requests of the budget through the API, with the same session."""
    for _ in range(count):
        assert client.get("/api/v1/org").status_code == 200


def _state(org) -> tuple[int, int, int]:
    with tenant_context(org):
        return credits_balance(), Job.objects.count(), Purchase.objects.count()


def _assert_friendly_429(response, *, htmx: bool = False) -> None:
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 900
    assert response["RateLimit-Policy"] == f'"org";q={LIMIT};w=900'
    assert response["RateLimit"] == f'"org";r=0;t={retry_after}'
    text = response.content.decode()
    assert f"your organisation has used its {LIMIT} requests" in " ".join(text.split())
    assert "Nothing was charged or started" in text
    assert f"Try again in {retry_after} s." in text
    if htmx:
        assert "<html" not in text
        assert text.lstrip().startswith("<p")
        assert response["HX-Reswap"] == "innerHTML"
    else:
        assert "<html" in text
        assert "<h1>Too many requests</h1>" in text


def test_job_page_over_the_limit_is_429_and_charges_nothing(world, budget, no_broker):
    _spend(budget, LIMIT)
    before = _state(world.org_a)
    response = budget.post("/jobs/submit", {"job_type": "summarize", "text": "Spend my credits."})
    _assert_friendly_429(response)
    assert _state(world.org_a) == before


def test_job_page_over_the_limit_answers_htmx_a_fragment(world, budget, no_broker):
    _spend(budget, LIMIT)
    before = _state(world.org_a)
    response = budget.post(
        "/jobs/submit", {"job_type": "analyze", "text": "Spend my credits."}, HTTP_HX_REQUEST="true"
    )
    _assert_friendly_429(response, htmx=True)
    assert _state(world.org_a) == before


def test_pages_and_the_api_share_the_organisations_budget(world, budget, no_broker):
    balance, jobs, _ = _state(world.org_a)
    first = budget.post("/jobs/submit", {"job_type": "summarize", "text": "One job."})
    assert first.status_code == 302
    assert first["RateLimit"].startswith('"org";r=2;')
    assert _state(world.org_a)[:2] == (balance - 10, jobs + 1)
    _spend(budget, LIMIT - 1)
    refused = budget.get("/api/v1/org")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"


def test_record_job_page_over_the_limit_is_429_and_charges_nothing(world, budget, no_broker):
    with MockApi(api_key="k", items=2) as api, tenant_context(world.org_a):
        source = etl_source_create(
            name="Items",
            kind="api",
            config={"url": api.url, "page_size": 10},
            field_mapping=MOCK_API_MAPPING,
            api_key="k",
            requests_per_second=50,
        )
        assert etl_run_source(source=source).status == "succeeded"
        record = Record.objects.filter(source=source).first()
    _spend(budget, LIMIT)
    before = _state(world.org_a)
    response = budget.post(f"/data/records/{record.pk}/job", {"job_type": "summarize"})
    _assert_friendly_429(response)
    assert _state(world.org_a) == before


def test_run_now_page_over_the_limit_starts_no_run(world, budget, monkeypatch):
    with MockApi(api_key="k", items=2) as api, tenant_context(world.org_a):
        source = etl_source_create(
            name="Items",
            kind="api",
            config={"url": api.url, "page_size": 10},
            field_mapping=MOCK_API_MAPPING,
            api_key="k",
            requests_per_second=50,
        )
    _spend(budget, LIMIT)
    response = budget.post(f"/data/sources/{source.pk}/run")
    _assert_friendly_429(response)
    with tenant_context(world.org_a):
        assert source.runs.count() == 0


def test_buy_page_over_the_limit_starts_no_checkout(world, budget, settings):
    with StripeStub() as stripe:
        settings.STRIPE_SECRET_KEY = "sk_test_stand_in"
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = stripe.url
        pack = CreditPack.objects.get(credits=500)
        _spend(budget, LIMIT)
        response = budget.post("/billing/buy", {"pack": str(pack.pk)})
        _assert_friendly_429(response)
        assert stripe.requests == []
    assert _state(world.org_a)[2] == 0


def test_reading_pages_is_not_counted(world, budget):
    _spend(budget, LIMIT)
    for path in ("/", "/jobs", "/data", "/billing"):
        response = budget.get(path)
        assert response.status_code == 200
        assert "RateLimit" not in response


def test_google_sign_in_is_limited_per_address(settings):
    settings.RATE_LIMIT_SIGNIN = 2
    settings.RATE_LIMIT_WINDOW_SECONDS = 60
    address = "198.51.100.23"
    get_redis().delete(redis_key("ratelimit", f"signin:{address}"))
    client = Client(REMOTE_ADDR=address)
    assert client.get("/auth/login").status_code != 429
    assert client.get("/auth/callback").status_code != 429  # shares the sign-in budget
    refused = client.get("/auth/login")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Policy"] == '"signin";q=2;w=60'
    text = " ".join(refused.content.decode().split())
    assert "<h1>Too many requests</h1>" in text
    assert "this address has used its 2 requests" in text
    assert client.get("/auth/callback?code=x&state=y").status_code == 429
    # Another address has its own budget.
    assert Client(REMOTE_ADDR="198.51.100.24").get("/auth/login").status_code != 429
    get_redis().delete(redis_key("ratelimit", f"signin:{address}"))


def test_stripe_webhook_is_limited_per_address_and_the_event_is_not_processed(world, settings):
    settings.RATE_LIMIT_STRIPE_WEBHOOK = 2
    settings.STRIPE_SECRET_KEY = "sk_test_stand_in"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    address = "198.51.100.99"
    get_redis().delete(redis_key("ratelimit", f"stripe-webhook:{address}"))
    client = Client(REMOTE_ADDR=address)
    events_before = StripeEvent.objects.count()
    for _ in range(2):
        assert client.post("/stripe/webhook", b"{}", content_type="application/json").status_code == 400
    expired = event("checkout.session.expired", {"id": "cs_limited", "object": "checkout.session"})
    body, header = signed(expired)
    refused = client.post(
        "/stripe/webhook", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("text/plain")
    assert 1 <= int(refused["Retry-After"]) <= 900
    assert refused["RateLimit-Policy"] == '"stripe-webhook";q=2;w=900'
    assert StripeEvent.objects.count() == events_before
    get_redis().delete(redis_key("ratelimit", f"stripe-webhook:{address}"))
