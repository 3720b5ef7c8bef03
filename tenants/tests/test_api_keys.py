"""Organisation API keys (docs/specs/team-access.md): admins create and revoke them; a key
calls the API as its organisation within its scopes and nowhere else, counts against the
organisation's rate limit, acts as `key:<name>`, and never outlives its creator's access."""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from auditlog.models import AuditEvent
from billing.models import CreditTransaction, TransactionKind
from etl.models import DataSource
from etl.samples import ARTICLES_CSV_MAPPING, SAMPLE_DIR
from jobs.models import Job
from nexus.api.permissions import IsOrganisationMember
from nexus.api.views import OrganisationEndpoint
from nexus.models import IdempotencyRecord
from nexus.ratelimit import organisation_window_reset
from tenants.apikeys import KEY_PREFIX, SCOPES
from tenants.models import ApiKey, Organisation, Role, User
from tenants.services import keys
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

KEY_SHAPE = re.compile(r"^nx_live_[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}$")
WEBHOOK_BODY = {"url": "http://127.0.0.1:9/x", "event_types": ["job.completed"]}


def _text() -> str:
    # Unique, so no job is answered from the result cache (cost 0, no ledger row).
    return f"Run {uuid.uuid4().hex}. The quarterly results were strong. Revenue grew. Costs fell."


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def make_key(world):
    """make_key(scopes, name=..., created_by=..., org=...) -> (ApiKey, secret), through the
    service (tests of the endpoint create theirs through the endpoint)."""

    def make(scopes, *, name="ci", created_by=None, org=None, expires_at=None):
        return keys.api_key_create(
            org=org or world.org_a,
            created_by=created_by or world.admin_a,
            name=name,
            scopes=list(scopes),
            expires_at=expires_at,
        )

    return make


@pytest.fixture
def csv_files(tmp_path, settings, world):
    """Org A's data directory holding the sample CSV, so a CSV source naming it is valid."""
    root = tmp_path / "etl-files"
    settings.ETL_LOCAL_ROOTS = [str(root)]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    directory = root / world.org_a.schema_name
    directory.mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "articles.csv", directory / "articles.csv")
    return directory


def _csv_source_body(name="Articles"):
    return {
        "name": name,
        "kind": "csv",
        "config": {"path": "articles.csv"},
        "field_mapping": ARTICLES_CSV_MAPPING,
        "schedule_minutes": 30,
    }


def _error(response) -> dict:
    return response.json()["error"]


# --- Creating, listing and revoking through the API ---------------------------------------------


def test_admin_creates_a_key_and_sees_its_secret_only_in_the_creation_answer(world, api_as):
    admin = api_as(world.admin_a)
    response = admin.post(
        "/api/v1/api-keys", {"name": "ci-pipeline", "scopes": ["jobs:write", "jobs:read"]}, format="json"
    )
    assert response.status_code == 201, response.json()
    created = response.json()["data"]
    secret = created["key"]
    assert secret.startswith(KEY_PREFIX)
    assert KEY_SHAPE.match(secret)
    assert created["prefix"] == secret.split(".")[0]
    assert created["scopes"] == ["jobs:read", "jobs:write"]
    assert created["status"] == "active"
    assert created["created_by"] == "admin@org-a.test"

    listing = admin.get("/api/v1/api-keys")
    assert listing.status_code == 200
    assert secret not in listing.content.decode()
    assert secret.split(".")[1] not in listing.content.decode()
    [listed] = listing.json()["data"]
    assert "key" not in listed
    assert listed["id"] == created["id"]
    assert listed["name"] == "ci-pipeline"
    assert listed["prefix"] == created["prefix"]
    assert listed["scopes"] == ["jobs:read", "jobs:write"]
    assert listed["created_by"] == "admin@org-a.test"
    assert listed["created_at"]
    assert listed["expires_at"] is None
    assert listed["last_used_at"] is None
    assert listed["last_used_ip"] is None
    assert listed["revoked_at"] is None
    assert listed["status"] == "active"


def test_only_the_sha512_hash_of_the_key_is_stored(world, api_as):
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys", {"name": "hashed", "scopes": ["jobs:read"]}, format="json"
    )
    secret = response.json()["data"]["key"]
    key = ApiKey.objects.get(pk=response.json()["data"]["id"])
    assert key.hashed_key != secret
    assert key.hashed_key.startswith("sha512$$")
    assert key.prefix == secret.split(".")[0]
    # Neither the key nor its secret part is in any column of the row.
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    hidden = secret.split(".")[1]
    assert not [column for column, value in row.items() if hidden in str(value)]
    assert key.is_valid(secret)


def test_an_idempotent_creation_keeps_the_secret_encrypted(world, api_as):
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys",
        {"name": "idem", "scopes": ["jobs:read"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"create-key-{uuid.uuid4()}",
    )
    assert response.status_code == 201
    secret = response.json()["data"]["key"]
    with tenant_context(world.org_a):
        [record] = IdempotencyRecord.objects.all()
        assert secret.split(".")[1] not in str(record.response_body)


def test_a_key_with_an_expiry_is_listed_with_it(world, api_as):
    expires_at = timezone.now() + timedelta(days=30)
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys",
        {"name": "monthly", "scopes": ["billing:read"], "expires_at": expires_at.isoformat()},
        format="json",
    )
    assert response.status_code == 201
    key = ApiKey.objects.get(pk=response.json()["data"]["id"])
    assert key.expiry_date == expires_at
    [listed] = api_as(world.admin_a).get("/api/v1/api-keys").json()["data"]
    assert listed["expires_at"] is not None
    assert listed["status"] == "active"


def test_creation_is_recorded_in_the_audit_log_without_the_secret(world, api_as):
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys", {"name": "audited", "scopes": ["jobs:read"]}, format="json"
    )
    data = response.json()["data"]
    event = AuditEvent.objects.get(action="api_key.created", target_id=data["id"])
    assert event.organisation_id == world.org_a.pk
    assert event.actor_label == "user:admin@org-a.test"
    assert event.target_label == f"audited ({data['prefix']})"
    assert event.changes["after"]["scopes"] == ["jobs:read"]
    assert data["key"].split(".")[1] not in str(event.changes)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "scopes": ["jobs:read"]}, "name"),
        ({"name": "   ", "scopes": ["jobs:read"]}, "name"),
        ({"name": "x" * 51, "scopes": ["jobs:read"]}, "name"),
        ({"scopes": ["jobs:read"]}, "name"),
        ({"name": "ci", "scopes": []}, "scopes"),
        ({"name": "ci"}, "scopes"),
        ({"name": "ci", "scopes": "jobs:read"}, "scopes"),
    ],
)
def test_invalid_names_and_scopes_are_422(world, api_as, body, field):
    response = api_as(world.admin_a).post("/api/v1/api-keys", body, format="json")
    assert response.status_code == 422
    assert _error(response)["code"] == "VALIDATION_ERROR"
    assert field in _error(response)["details"]["fields"]
    assert not ApiKey.objects.filter(organisation=world.org_a).exists()


def test_an_unknown_scope_is_422_naming_it(world, api_as):
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys", {"name": "ci", "scopes": ["jobs:read", "jobs:delete"]}, format="json"
    )
    assert response.status_code == 422
    assert "jobs:delete" in str(_error(response)["details"]["fields"]["scopes"])
    assert not ApiKey.objects.filter(organisation=world.org_a).exists()


def test_the_service_names_unknown_scopes_too(world, make_key):
    from nexus.api.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as raised:
        make_key(["jobs:read", "admin:everything"])
    assert "admin:everything" in raised.value.message
    assert not ApiKey.objects.filter(organisation=world.org_a).exists()


@pytest.mark.parametrize(
    "expires_in",
    [timedelta(days=-1), timedelta(seconds=-1), timedelta(days=365 + 1)],
    ids=["yesterday", "a-second-ago", "past-the-maximum"],
)
def test_an_expiry_in_the_past_or_past_the_maximum_is_422(world, api_as, settings, expires_in):
    settings.API_KEY_MAX_DAYS = 365
    expires_at = timezone.now() + expires_in
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys",
        {"name": "ci", "scopes": ["jobs:read"], "expires_at": expires_at.isoformat()},
        format="json",
    )
    assert response.status_code == 422
    assert "expires_at" in _error(response)["details"]["fields"]
    assert not ApiKey.objects.filter(organisation=world.org_a).exists()


def test_the_maximum_expiry_follows_the_setting(world, api_as, settings):
    settings.API_KEY_MAX_DAYS = 7
    body = {"name": "ci", "scopes": ["jobs:read"]}
    too_far = api_as(world.admin_a).post(
        "/api/v1/api-keys",
        {**body, "expires_at": (timezone.now() + timedelta(days=8)).isoformat()},
        format="json",
    )
    assert too_far.status_code == 422
    assert "7 days" in _error(too_far)["message"]
    within = api_as(world.admin_a).post(
        "/api/v1/api-keys",
        {**body, "expires_at": (timezone.now() + timedelta(days=6)).isoformat()},
        format="json",
    )
    assert within.status_code == 201


def test_a_member_cannot_create_or_list_keys(world, api_as):
    member = api_as(world.member_a)
    response = member.post("/api/v1/api-keys", {"name": "mine", "scopes": ["jobs:read"]}, format="json")
    assert response.status_code == 403
    assert _error(response)["code"] == "FORBIDDEN"
    assert member.get("/api/v1/api-keys").status_code == 403
    assert not ApiKey.objects.filter(organisation=world.org_a).exists()


def test_a_member_cannot_revoke_a_key(world, api_as, make_key):
    key, secret = make_key(["jobs:read"])
    assert api_as(world.member_a).delete(f"/api/v1/api-keys/{key.pk}").status_code == 403
    key.refresh_from_db()
    assert not key.revoked
    assert key_client(secret).get("/api/v1/jobs").status_code == 200


def test_the_organisation_may_hold_at_most_org_max_api_keys_live_keys(world, api_as, settings, make_key):
    settings.ORG_MAX_API_KEYS = 2
    first, _ = make_key(["jobs:read"], name="one")
    make_key(["jobs:read"], name="two")
    admin = api_as(world.admin_a)
    response = admin.post("/api/v1/api-keys", {"name": "three", "scopes": ["jobs:read"]}, format="json")
    assert response.status_code == 409
    assert _error(response)["code"] == "LIMIT_REACHED"
    assert _error(response)["details"] == {"limit": "api_keys", "cap": 2, "current": 2}
    assert ApiKey.objects.filter(organisation=world.org_a).count() == 2
    # Revoked keys do not count: revoking one makes room.
    assert admin.delete(f"/api/v1/api-keys/{first.pk}").status_code == 204
    again = admin.post("/api/v1/api-keys", {"name": "three", "scopes": ["jobs:read"]}, format="json")
    assert again.status_code == 201


def test_the_cap_counts_only_the_organisations_own_keys(world, api_as, settings, make_key):
    settings.ORG_MAX_API_KEYS = 1
    make_key(["jobs:read"], org=world.org_b, created_by=world.admin_b)
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys", {"name": "ours", "scopes": ["jobs:read"]}, format="json"
    )
    assert response.status_code == 201


def test_the_list_shows_only_the_organisations_keys(world, api_as, make_key):
    make_key(["jobs:read"], name="theirs", org=world.org_b, created_by=world.admin_b)
    ours, _ = make_key(["jobs:read"], name="ours")
    listed = api_as(world.admin_a).get("/api/v1/api-keys").json()["data"]
    assert [item["id"] for item in listed] == [str(ours.pk)]


# --- Authenticating with a key ------------------------------------------------------------------


def test_a_key_reads_within_its_scopes(world, make_key):
    _, secret = make_key(["jobs:read", "billing:read"])
    client = key_client(secret)
    jobs = client.get("/api/v1/jobs")
    assert jobs.status_code == 200
    assert jobs.json()["meta"]["total"] == 0
    assert client.get("/api/v1/analytics/usage").status_code == 200
    credits = client.get("/api/v1/credits")
    assert credits.status_code == 200
    assert credits.json()["data"]["balance"] == 0


def test_a_key_reads_its_own_organisation_only(funded, api_as, make_key):
    theirs = api_as(funded.member_b).post("/api/v1/summarize", {"text": _text()}, format="json")
    job_id = theirs.json()["data"]["id"]
    _, secret = make_key(["jobs:read"])
    client = key_client(secret)
    assert client.get("/api/v1/jobs").json()["meta"]["total"] == 0
    response = client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert _error(response)["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"),
    [
        ("get", "/api/v1/credits", None, "billing:read"),
        ("get", "/api/v1/audits", None, "audits:read"),
        ("get", "/api/v1/data", None, "data:read"),
        ("get", "/api/v1/etl/sources", None, "etl:read"),
        ("get", "/api/v1/webhooks", None, "webhooks:read"),
        ("post", "/api/v1/summarize", {"text": "Some text to summarise."}, "jobs:write"),
        ("post", "/api/v1/webhooks", WEBHOOK_BODY, "webhooks:write"),
        ("post", "/api/v1/billing/checkout", {"pack": "starter"}, "billing:write"),
    ],
)
def test_a_key_outside_its_scopes_is_403_naming_the_scope(funded, make_key, method, path, body, scope):
    _, secret = make_key(["jobs:read"])
    response = getattr(key_client(secret), method)(path, body, format="json")
    assert response.status_code == 403
    error = _error(response)
    assert error["code"] == "FORBIDDEN"
    assert scope in error["message"]
    assert error["details"] == {"required_scope": scope, "key_scopes": ["jobs:read"]}


def test_a_read_scope_does_not_allow_the_write(funded, make_key):
    _, secret = make_key(["jobs:read", "webhooks:read"])
    client = key_client(secret)
    response = client.post("/api/v1/summarize", {"text": _text()}, format="json")
    assert response.status_code == 403
    assert _error(response)["details"]["required_scope"] == "jobs:write"
    response = client.post("/api/v1/webhooks", WEBHOOK_BODY, format="json")
    assert _error(response)["details"]["required_scope"] == "webhooks:write"
    with tenant_context(funded.org_a):
        assert Job.objects.count() == 0
        assert WebhookEndpoint.objects.count() == 0


def test_a_write_scope_does_not_allow_the_read(funded, make_key):
    _, secret = make_key(["jobs:write"])
    response = key_client(secret).get("/api/v1/jobs")
    assert response.status_code == 403
    assert _error(response)["details"]["required_scope"] == "jobs:read"


ALL_SCOPES = sorted(SCOPES)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/api-keys", None),
        ("post", "/api/v1/api-keys", {"name": "minted", "scopes": ALL_SCOPES}),
        ("delete", "/api/v1/api-keys/{own_key}", None),
        ("get", "/api/v1/invitations", None),
        ("post", "/api/v1/invitations", {"email": "outsider@example.com", "role": "admin"}),
        ("get", "/api/v1/org/members", None),
        ("patch", "/api/v1/org/members/{member}", {"role": "admin"}),
        ("delete", "/api/v1/org/members/{member}", None),
        ("get", "/api/v1/audit-log", None),
        ("get", "/api/v1/audit-log/export.csv", None),
        ("get", "/api/v1/org", None),
        ("patch", "/api/v1/org", {"domain_auto_join": False}),
        ("post", "/api/v1/org/leave", None),
        ("get", "/api/v1/auth/me", None),
        ("post", "/api/v1/auth/logout-all", None),
    ],
)
def test_person_only_routes_refuse_keys_whatever_their_scopes(world, make_key, method, path, body):
    key, secret = make_key(ALL_SCOPES)
    url = path.format(own_key=key.pk, member=world.member_a.pk)
    response = getattr(key_client(secret), method)(url, body, format="json")
    assert response.status_code == 403
    error = _error(response)
    assert error["code"] == "FORBIDDEN"
    assert error["details"] == {"reason": "person_only"}
    assert "API keys cannot call this endpoint" in error["message"]
    # Nothing was done: no key minted or revoked, no member changed, no invitation sent.
    key.refresh_from_db()
    assert not key.revoked
    assert ApiKey.objects.filter(organisation=world.org_a).count() == 1
    world.member_a.refresh_from_db()
    world.admin_a.refresh_from_db()
    assert (world.member_a.role, world.member_a.is_active) == (Role.MEMBER, True)
    assert world.admin_a.organisation_id == world.org_a.pk
    assert world.admin_a.token_version == 0
    assert not world.org_a.invitations.exists()
    world.org_a.refresh_from_db()
    assert world.org_a.domain_auto_join is True
    assert key_client(secret).get("/api/v1/jobs").status_code == 200


def test_a_key_cannot_exchange_itself_for_a_person_token(world, make_key):
    _, secret = make_key(ALL_SCOPES)
    response = key_client(secret).post("/api/v1/auth/token")
    # The exchange takes a browser session only; a key is no session.
    assert response.status_code == 401
    assert _error(response)["code"] == "UNAUTHORIZED"
    assert "data" not in response.json()
    assert django_settings.REFRESH_COOKIE_NAME not in response.cookies


def test_a_key_does_not_sign_in_to_pages(world, make_key):
    _, secret = make_key(ALL_SCOPES)
    response = Client().get("/api-keys", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def _tampered(secret: str) -> str:
    last = secret[-1]
    return secret[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize(
    "credentials",
    [
        "nx_live_",
        "nx_live_abcdefgh",
        "nx_live_abcdefgh.",
        "nx_live_nope1234.0123456789abcdef0123456789abcdef",
        "nx_test_whatever.0123456789abcdef0123456789abcdef",
        "nx_live_" + "a" * 200,
        "{tampered}",
        "{other_prefix}",
        "{too_long}",
    ],
    ids=[
        "prefix-only",
        "no-secret",
        "empty-secret",
        "unknown",
        "unknown-kind",
        "oversized",
        "tampered",
        "secret-under-another-prefix",
        "valid-plus-tail",
    ],
)
def test_a_malformed_unknown_or_tampered_key_is_401(world, make_key, credentials):
    _, secret = make_key(["jobs:read"])
    other, _ = make_key(["jobs:read"], name="other")
    raw = credentials.format(
        tampered=_tampered(secret),
        other_prefix=f"{other.prefix}.{secret.split('.')[1]}",
        too_long=secret + "x" * 100,
    )
    response = key_client(raw).get("/api/v1/jobs")
    assert response.status_code == 401
    assert _error(response)["code"] == "UNAUTHORIZED"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    # The real key still works: failures lock nothing out.
    assert key_client(secret).get("/api/v1/jobs").status_code == 200


def test_revoking_a_key_refuses_its_very_next_request(world, api_as, make_key):
    key, secret = make_key(["jobs:read"])
    client = key_client(secret)
    assert client.get("/api/v1/jobs").status_code == 200
    response = api_as(world.admin_a).delete(f"/api/v1/api-keys/{key.pk}")
    assert response.status_code == 204
    refused = client.get("/api/v1/jobs")
    assert refused.status_code == 401
    assert _error(refused)["code"] == "UNAUTHORIZED"
    key.refresh_from_db()
    assert key.revoked
    assert key.revoked_at is not None
    assert key.revoked_by_label == "user:admin@org-a.test"
    [listed] = api_as(world.admin_a).get("/api/v1/api-keys").json()["data"]
    assert listed["status"] == "revoked"
    assert listed["revoked_at"] is not None


def test_revoking_twice_is_a_204_that_changes_and_records_nothing(world, api_as, make_key):
    key, _ = make_key(["jobs:read"])
    admin = api_as(world.admin_a)
    assert admin.delete(f"/api/v1/api-keys/{key.pk}").status_code == 204
    key.refresh_from_db()
    first_revoked_at = key.revoked_at
    assert admin.delete(f"/api/v1/api-keys/{key.pk}").status_code == 204
    key.refresh_from_db()
    assert key.revoked_at == first_revoked_at
    assert AuditEvent.objects.filter(action="api_key.revoked", target_id=str(key.pk)).count() == 1
    event = AuditEvent.objects.get(action="api_key.revoked", target_id=str(key.pk))
    assert event.changes == {"reason": "revoked"}
    assert event.actor_label == "user:admin@org-a.test"


def test_another_organisations_key_is_404_and_stays_live(world, api_as, make_key):
    key, secret = make_key(["jobs:read"])
    response = api_as(world.admin_b).delete(f"/api/v1/api-keys/{key.pk}")
    assert response.status_code == 404
    assert _error(response)["code"] == "NOT_FOUND"
    unknown = api_as(world.admin_b).delete(f"/api/v1/api-keys/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert _error(unknown)["message"] == _error(response)["message"]
    key.refresh_from_db()
    assert not key.revoked
    assert key_client(secret).get("/api/v1/jobs").status_code == 200


def test_an_expired_key_is_401_saying_it_expired(world, api_as, make_key):
    key, secret = make_key(["jobs:read"], expires_at=timezone.now() + timedelta(days=1))
    assert key_client(secret).get("/api/v1/jobs").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(expiry_date=timezone.now() - timedelta(minutes=1))
    response = key_client(secret).get("/api/v1/jobs")
    assert response.status_code == 401
    assert _error(response)["code"] == "UNAUTHORIZED"
    assert "expired" in _error(response)["message"]
    [listed] = api_as(world.admin_a).get("/api/v1/api-keys").json()["data"]
    assert listed["status"] == "expired"


def test_a_key_of_a_deactivated_organisation_is_403(world, make_key):
    _, secret = make_key(["jobs:read"])
    Organisation.objects.filter(pk=world.org_a.pk).update(is_active=False)
    response = key_client(secret).get("/api/v1/jobs")
    assert response.status_code == 403
    assert _error(response)["code"] == "FORBIDDEN"
    assert "deactivated" in _error(response)["message"]


def test_a_key_whose_creator_lost_access_is_refused_even_unrevoked(world, make_key):
    # Removal revokes a creator's keys; authentication does not rely on that.
    _, secret = make_key(["jobs:read"])
    User.objects.filter(pk=world.admin_a.pk).update(organisation=world.org_b)
    assert key_client(secret).get("/api/v1/jobs").status_code == 401
    User.objects.filter(pk=world.admin_a.pk).update(organisation=world.org_a, is_active=False)
    assert key_client(secret).get("/api/v1/jobs").status_code == 401
    User.objects.filter(pk=world.admin_a.pk).update(is_active=True)
    assert key_client(secret).get("/api/v1/jobs").status_code == 200


def test_a_key_stops_when_its_creator_is_no_longer_an_admin(world, api_as, make_key):
    # Demoted however it happened (here behind the services' back): the key is refused.
    _, secret = make_key(["webhooks:write"])
    assert key_client(secret).get("/api/v1/webhooks").status_code in (200, 403)
    User.objects.filter(pk=world.admin_a.pk).update(role=Role.MEMBER)
    assert key_client(secret).post("/api/v1/webhooks", WEBHOOK_BODY, format="json").status_code == 401


def test_demoting_a_keys_creator_revokes_it_and_says_why(world, api_as, make_key):
    api_as(world.admin_a).patch(f"/api/v1/org/members/{world.member_a.pk}", {"role": "admin"}, format="json")
    key, secret = keys.api_key_create(
        org=world.org_a, created_by=world.member_a, name="theirs", scopes=["jobs:read"]
    )
    response = api_as(world.admin_a).patch(
        f"/api/v1/org/members/{world.member_a.pk}", {"role": "member"}, format="json"
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked
    assert key_client(secret).get("/api/v1/jobs").status_code == 401
    (event,) = AuditEvent.objects.filter(action="api_key.revoked", target_id=str(key.pk))
    assert event.changes == {"reason": "creator_demoted"}


# --- Acting as the key ---------------------------------------------------------------------------


def test_a_job_submitted_with_a_key_is_acted_by_the_key_and_owned_by_its_creator(funded, broker, make_key):
    key, secret = make_key(["jobs:write", "jobs:read"], name="nightly")
    client = key_client(secret)
    response = client.post("/api/v1/summarize", {"text": _text()}, format="json")
    assert response.status_code == 202, response.json()
    job_id = response.json()["data"]["id"]
    with tenant_context(funded.org_a):
        job = Job.objects.get(pk=job_id)
        assert job.actor == "key:nightly"
        assert job.user_id == funded.admin_a.pk
        deduction = CreditTransaction.objects.get(job_id=job.pk, kind=TransactionKind.DEDUCTION)
        assert deduction.actor_label == "key:nightly"
        assert deduction.actor_id == key.pk
        assert deduction.amount == -job.cost
    detail = client.get(f"/api/v1/jobs/{job_id}")
    assert detail.status_code == 200
    assert detail.json()["data"]["actor"] == "key:nightly"
    listed = client.get("/api/v1/jobs").json()["data"]
    assert [(item["id"], item["actor"]) for item in listed] == [(job_id, "key:nightly")]


def test_a_change_made_with_a_key_is_recorded_with_the_key_as_actor(world, api_as, make_key):
    key, secret = make_key(["webhooks:write"], name="provisioner")
    response = key_client(secret).post(
        "/api/v1/webhooks", WEBHOOK_BODY, format="json", HTTP_USER_AGENT="provisioner/1.0"
    )
    assert response.status_code == 201, response.json()
    endpoint_id = response.json()["data"]["id"]
    event = AuditEvent.objects.get(action="webhook.created", target_id=endpoint_id)
    assert event.organisation_id == world.org_a.pk
    assert event.actor_kind == "key"
    assert event.actor_label == "key:provisioner"
    assert event.actor_id == str(key.pk)
    assert event.ip == "127.0.0.1"
    assert event.user_agent == "provisioner/1.0"
    # An admin reads it in the audit log under the key's label.
    listed = api_as(world.admin_a).get("/api/v1/audit-log", {"actor": "key:provisioner"}).json()["data"]
    assert [(item["action"], item["actor_kind"]) for item in listed] == [("webhook.created", "key")]


# --- The organisation's rate limit ------------------------------------------------------------


@pytest.fixture
def limited_org_a(world):
    organisation_window_reset(world.org_a)
    Organisation.objects.filter(pk=world.org_a.pk).update(api_rate_limit=3)
    yield world.org_a
    organisation_window_reset(world.org_a)


def test_a_key_counts_against_its_organisations_rate_limit(limited_org_a, world, make_key, api_as):
    _, secret = make_key(["jobs:read"])
    client = key_client(secret)
    first = client.get("/api/v1/jobs")
    assert first.status_code == 200
    assert first["RateLimit-Policy"] == '"org";q=3;w=900'
    assert first["RateLimit"].startswith('"org";r=2;')
    # A person of the organisation and the key share one budget.
    assert api_as(world.member_a).get("/api/v1/org")["RateLimit"].startswith('"org";r=1;')
    assert client.get("/api/v1/jobs")["RateLimit"].startswith('"org";r=0;')
    refused = client.get("/api/v1/jobs")
    assert refused.status_code == 429
    assert _error(refused)["code"] == "RATE_LIMITED"
    assert int(refused["Retry-After"]) >= 1
    assert api_as(world.member_a).get("/api/v1/org").status_code == 429


def test_a_refused_key_counts_against_the_address_not_the_organisation(limited_org_a, world, make_key):
    _, secret = make_key(["jobs:read"])
    response = key_client(_tampered(secret)).get("/api/v1/jobs")
    assert response.status_code == 401
    assert response["RateLimit-Policy"].startswith('"anonymous";')
    assert key_client(secret).get("/api/v1/jobs")["RateLimit"].startswith('"org";r=2;')


# --- Last use -----------------------------------------------------------------------------------


def _last_used_updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and '"tenants_apikey"' in q["sql"]]


def test_last_use_is_written_on_first_use_and_not_on_every_request(world, api_as, make_key):
    key, secret = make_key(["jobs:read"])
    client = key_client(secret)
    with CaptureQueriesContext(connection) as first:
        assert client.get("/api/v1/jobs").status_code == 200
    assert len(_last_used_updates(first.captured_queries)) == 1
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert key.last_used_ip == "127.0.0.1"
    written_at = key.last_used_at

    with CaptureQueriesContext(connection) as later:
        for _ in range(3):
            assert client.get("/api/v1/jobs").status_code == 200
    assert _last_used_updates(later.captured_queries) == []
    key.refresh_from_db()
    assert key.last_used_at == written_at

    [listed] = api_as(world.admin_a).get("/api/v1/api-keys").json()["data"]
    assert listed["last_used_ip"] == "127.0.0.1"
    assert listed["last_used_at"] is not None


def test_last_use_is_written_again_from_a_new_address(world, make_key):
    key, secret = make_key(["jobs:read"])
    client = key_client(secret)
    client.get("/api/v1/jobs")
    with CaptureQueriesContext(connection) as moved:
        assert client.get("/api/v1/jobs", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert len(_last_used_updates(moved.captured_queries)) == 1
    key.refresh_from_db()
    assert key.last_used_ip == "203.0.113.9"


def test_last_use_is_written_again_once_the_interval_has_passed(world, settings, make_key):
    key, secret = make_key(["jobs:read"])
    client = key_client(secret)
    client.get("/api/v1/jobs")
    stale = timezone.now() - timedelta(seconds=settings.API_KEY_LAST_USED_EVERY_SECONDS + 5)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=stale)
    with CaptureQueriesContext(connection) as captured:
        client.get("/api/v1/jobs")
    assert len(_last_used_updates(captured.captured_queries)) == 1
    key.refresh_from_db()
    assert key.last_used_at > stale


def test_a_refused_key_records_no_use(world, make_key):
    key, secret = make_key(["jobs:read"])
    key_client(_tampered(secret)).get("/api/v1/jobs")
    key.refresh_from_db()
    assert key.last_used_at is None


# --- A key never outlives its creator's access ---------------------------------------------------


@pytest.fixture
def second_admin(world):
    """member_a promoted to admin, so they can create keys and leave (admin_a stays admin)."""
    User.objects.filter(pk=world.member_a.pk).update(role=Role.ADMIN)
    world.member_a.refresh_from_db()
    return world.member_a


def _revocation_events(key: ApiKey):
    return list(AuditEvent.objects.filter(action="api_key.revoked", target_id=str(key.pk)))


def test_removing_a_member_revokes_the_keys_they_created(world, second_admin, api_as, make_key):
    response = api_as(second_admin).post(
        "/api/v1/api-keys", {"name": "theirs", "scopes": ["jobs:read"]}, format="json"
    )
    theirs = ApiKey.objects.get(pk=response.json()["data"]["id"])
    their_client = key_client(response.json()["data"]["key"])
    _, ours = make_key(["jobs:read"], name="ours")
    assert their_client.get("/api/v1/jobs").status_code == 200

    assert api_as(world.admin_a).delete(f"/api/v1/org/members/{second_admin.pk}").status_code == 204

    assert their_client.get("/api/v1/jobs").status_code == 401
    theirs.refresh_from_db()
    assert theirs.revoked
    assert theirs.revoked_by_label == "user:admin@org-a.test"
    [event] = _revocation_events(theirs)
    assert event.changes == {"reason": "creator_removed"}
    assert event.actor_label == "user:admin@org-a.test"
    assert event.organisation_id == world.org_a.pk
    removed = AuditEvent.objects.get(action="member.removed", target_id=str(second_admin.pk))
    assert removed.changes["api_keys_revoked"] == 1
    # Only the removed member's keys go.
    assert key_client(ours).get("/api/v1/jobs").status_code == 200


def test_leaving_revokes_the_keys_the_member_created(world, second_admin, api_as):
    response = api_as(second_admin).post(
        "/api/v1/api-keys", {"name": "leaver", "scopes": ["jobs:read"]}, format="json"
    )
    key = ApiKey.objects.get(pk=response.json()["data"]["id"])
    client = key_client(response.json()["data"]["key"])
    assert client.get("/api/v1/jobs").status_code == 200

    assert api_as(second_admin).post("/api/v1/org/leave").status_code == 204

    assert client.get("/api/v1/jobs").status_code == 401
    key.refresh_from_db()
    assert key.revoked
    [event] = _revocation_events(key)
    assert event.changes == {"reason": "creator_left"}
    assert event.actor_label == "user:member@org-a.test"
    left = AuditEvent.objects.get(action="member.left", target_id=str(second_admin.pk))
    assert left.changes["api_keys_revoked"] == 1


# --- Fail closed: every API route opens to keys on purpose, or not at all ------------------------

API_PREFIX = "^api/(?P<version>v1|v2)/"
# Routes only a person may call: keys cannot manage keys, members, invitations, the
# organisation's settings or the audit log, nor act as a person's session.
PERSON_ONLY = {
    "auth/token",
    "auth/logout-all",
    "auth/me",
    "org",
    "org/members",
    "org/members/<uuid:member_id>",
    "org/leave",
    "api-keys",
    "api-keys/<uuid:key_id>",
    "invitations",
    "invitations/<uuid:invitation_id>",
    "invitations/<uuid:invitation_id>/resend",
    "audit-log",
    "audit-log/export.csv",
}
# API views that are not an organisation's: they authenticate nothing but a refresh cookie.
NOT_ORGANISATION_ENDPOINTS = {"auth/refresh", "auth/logout"}
HANDLER_METHODS = ("get", "post", "put", "patch", "delete")


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def api_routes() -> dict[str, type]:
    """Every route under /api/v1/ (relative to it) and its view class."""
    routes = {}
    for route, callback in _walk(get_resolver().url_patterns):
        if route.startswith(API_PREFIX):
            routes[route.removeprefix(API_PREFIX)] = getattr(callback, "view_class", None)
    return routes


def _implemented(view_class) -> list[str]:
    return [method for method in HANDLER_METHODS if hasattr(view_class, method)]


def test_the_route_walk_finds_the_api():
    routes = api_routes()
    for route in ("summarize", "jobs", "api-keys", "webhooks", "etl/sources", "data", "credits", "audits"):
        assert route in routes
    assert len(routes) > 40


def test_every_api_route_is_a_class_based_view():
    assert [route for route, view in api_routes().items() if view is None] == []


def test_every_organisation_endpoint_method_declares_a_scope_or_is_person_only():
    undeclared = []
    for route, view in api_routes().items():
        if not issubclass(view, OrganisationEndpoint) or route in PERSON_ONLY:
            continue
        declared = getattr(view, "key_scopes", None) or {}
        for method in _implemented(view):
            scope = declared.get(method.upper())
            if scope not in SCOPES:
                undeclared.append(f"{method.upper()} {route} ({view.__name__}): {scope!r}")
    assert undeclared == [], (
        "Each method of an API view names the key scope it needs in key_scopes, or the route is "
        "added to PERSON_ONLY on purpose."
    )


def test_person_only_routes_are_organisation_endpoints_that_open_nothing_to_keys():
    routes = api_routes()
    assert not PERSON_ONLY - set(routes), sorted(PERSON_ONLY - set(routes))
    for route in PERSON_ONLY:
        view = routes[route]
        assert issubclass(view, OrganisationEndpoint), route
        assert not getattr(view, "key_scopes", None), f"{route} is person-only but names key scopes"


def test_every_declared_scope_is_a_known_scope_of_a_known_method():
    for route, view in api_routes().items():
        for method, scope in (getattr(view, "key_scopes", None) or {}).items():
            assert method in {"GET", "POST", "PUT", "PATCH", "DELETE"}, f"{route}: {method}"
            assert scope in SCOPES, f"{route}: {method} needs unknown scope {scope}"


def test_only_the_cookie_routes_are_not_organisation_endpoints():
    outside = {route for route, view in api_routes().items() if not issubclass(view, OrganisationEndpoint)}
    assert outside == NOT_ORGANISATION_ENDPOINTS


def test_every_organisation_endpoint_checks_keys_through_its_permission():
    # The scope check lives in IsOrganisationMember; a view with another permission class
    # would let every key through.
    unchecked = []
    for route, view in api_routes().items():
        if issubclass(view, OrganisationEndpoint):
            for permission in view.permission_classes:
                if not issubclass(permission, IsOrganisationMember):
                    unchecked.append(f"{route}: {permission.__name__}")
    assert unchecked == []


def _url(route: str) -> str:
    path = re.sub(r"<uuid:\w+>", str(uuid.uuid4()), route)
    path = re.sub(r"<(?:str|slug):\w+>", "x", path)
    return f"/api/v1/{path}"


def _keyed_calls():
    for route, view in sorted(api_routes().items()):
        if not issubclass(view, OrganisationEndpoint) or route in PERSON_ONLY:
            continue
        for method in _implemented(view):
            yield pytest.param(route, method, id=f"{method.upper()} {route}")


def _person_only_calls():
    for route in sorted(PERSON_ONLY - {"auth/token"}):
        for method in _implemented(api_routes()[route]):
            yield pytest.param(route, method, id=f"{method.upper()} {route}")


@pytest.mark.parametrize(("route", "method"), list(_keyed_calls()))
def test_every_keyed_route_refuses_a_key_without_its_scope(world, make_key, route, method):
    needed = api_routes()[route].key_scopes[method.upper()]
    others = [scope for scope in SCOPES if scope != needed]
    _, secret = make_key(others)
    response = getattr(key_client(secret), method)(_url(route), {}, format="json")
    assert response.status_code == 403, response.content
    assert _error(response)["details"]["required_scope"] == needed


@pytest.mark.parametrize(("route", "method"), list(_person_only_calls()))
def test_every_person_only_route_refuses_a_key_with_every_scope(world, make_key, route, method):
    _, secret = make_key(ALL_SCOPES)
    response = getattr(key_client(secret), method)(_url(route), {}, format="json")
    assert response.status_code == 403, response.content
    assert _error(response)["details"] == {"reason": "person_only"}


# --- A key created on the page drives the API within its scopes --------------------------------


@pytest.fixture
def admin_page(world):
    client = Client()
    client.force_login(world.admin_a)
    return client


SECRET_ON_PAGE = re.compile(r"data-api-key-secret>\s*([^<\s]+)\s*<")


def _create_on_page(page: Client, name: str, scopes, expires_in_days="30") -> str:
    response = page.post(
        "/api-keys/create", {"name": name, "scopes": list(scopes), "expires_in_days": expires_in_days}
    )
    assert response.status_code == 302
    assert response["Location"] == "/api-keys"
    shown = page.get("/api-keys")
    assert shown.status_code == 200
    [secret] = SECRET_ON_PAGE.findall(shown.content.decode())
    again = page.get("/api-keys").content.decode()
    assert "data-api-key-secret" not in again
    assert secret not in again
    assert secret.split(".")[0] in again  # the prefix stays listed
    return secret


def _counts(org) -> dict:
    with tenant_context(org):
        return {
            "jobs": Job.objects.count(),
            "webhooks": WebhookEndpoint.objects.count(),
            "sources": DataSource.objects.count(),
            "ledger": CreditTransaction.objects.count(),
        }


def test_a_key_created_on_the_page_drives_the_api_within_its_scopes_and_nothing_outside_them(
    funded, broker, csv_files, admin_page
):
    secret = _create_on_page(admin_page, "everything", SCOPES)
    assert KEY_SHAPE.match(secret)
    key = ApiKey.objects.get(organisation=funded.org_a, name="everything")
    assert sorted(key.scopes) == ALL_SCOPES
    assert key.expiry_date is not None
    assert key.hashed_key != secret

    full = key_client(secret)
    reads = {
        "jobs:read": "/api/v1/jobs",
        "audits:read": "/api/v1/audits",
        "data:read": "/api/v1/data",
        "etl:read": "/api/v1/etl/sources",
        "webhooks:read": "/api/v1/webhooks",
        "billing:read": "/api/v1/credits",
    }
    writes = {
        "jobs:write": ("/api/v1/summarize", {"text": _text()}),
        "etl:write": ("/api/v1/etl/sources", _csv_source_body()),
        "webhooks:write": ("/api/v1/webhooks", WEBHOOK_BODY),
    }
    for scope, path in reads.items():
        response = full.get(path)
        assert response.status_code == 200, (scope, response.json())
    for scope, (path, body) in writes.items():
        response = full.post(path, body, format="json")
        assert response.status_code in (201, 202), (scope, response.json())
    # The scopes that spend money reach their views (which refuse the bodies on their merits).
    assert full.post(f"/api/v1/audits/{uuid.uuid4()}/pause").status_code == 404
    assert full.post("/api/v1/billing/checkout", {}, format="json").status_code == 422
    assert _counts(funded.org_a) == {"jobs": 1, "webhooks": 1, "sources": 1, "ledger": 2}
    with tenant_context(funded.org_a):
        assert Job.objects.get().actor == "key:everything"

    reader_secret = _create_on_page(admin_page, "reader", ["jobs:read"], expires_in_days="")
    reader_key = ApiKey.objects.get(organisation=funded.org_a, name="reader")
    assert reader_key.scopes == ["jobs:read"]
    assert reader_key.expiry_date is None
    reader = key_client(reader_secret)
    before = _counts(funded.org_a)
    assert reader.get("/api/v1/jobs").status_code == 200
    for scope, path in reads.items():
        if scope == "jobs:read":
            continue
        response = reader.get(path)
        assert response.status_code == 403, scope
        assert _error(response)["details"]["required_scope"] == scope
    for scope, (path, body) in writes.items():
        response = reader.post(path, body, format="json")
        assert response.status_code == 403, scope
        assert _error(response)["details"]["required_scope"] == scope
    assert _counts(funded.org_a) == before

    asked = admin_page.post(f"/api-keys/{reader_key.pk}/revoke", {"action": "revoke"})
    assert asked.status_code == 200
    assert 'name="confirmed" value="revoke"' in asked.content.decode()
    assert reader.get("/api/v1/jobs").status_code == 200
    revoked = admin_page.post(
        f"/api-keys/{reader_key.pk}/revoke", {"action": "revoke", "confirmed": "revoke"}
    )
    assert revoked.status_code == 302
    assert reader.get("/api/v1/jobs").status_code == 401
    reader_key.refresh_from_db()
    assert reader_key.revoked
    assert reader_key.revoked_by_label == "user:admin@org-a.test"
    # The other key is untouched.
    assert full.get("/api/v1/jobs").status_code == 200


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "bad", "scopes": ["jobs:read"], "expires_in_days": "0"}, "at least one day"),
        ({"name": "bad", "scopes": ["jobs:read"], "expires_in_days": "soon"}, "whole number of days"),
        ({"name": "bad", "scopes": ["jobs:read"], "expires_in_days": "366"}, "at most 365 days"),
        # Far past the calendar's end: refused, not a server error.
        ({"name": "bad", "scopes": ["jobs:read"], "expires_in_days": "99999999999"}, "at most 365 days"),
        ({"name": "bad", "scopes": ["jobs:read"], "expires_in_days": "5000000"}, "at most 365 days"),
        ({"name": "bad", "expires_in_days": ""}, "Give at least one scope"),
        ({"name": "bad", "scopes": ["jobs:read", "root:all"]}, "root:all"),
        ({"name": "", "scopes": ["jobs:read"]}, "A name of 1 to 50 characters"),
        ({"name": "x" * 51, "scopes": ["jobs:read"]}, "A name of 1 to 50 characters"),
    ],
    ids=[
        "zero-days",
        "not-a-number",
        "past-the-maximum",
        "past-the-calendar",
        "past-the-year-9999",
        "no-scopes",
        "unknown-scope",
        "empty-name",
        "long-name",
    ],
)
def test_the_page_refuses_an_invalid_key_with_a_message(world, admin_page, settings, form, message):
    settings.API_KEY_MAX_DAYS = 365
    response = admin_page.post("/api-keys/create", form)
    assert response.status_code == 302
    page = admin_page.get(response["Location"]).content.decode()
    assert message in page
    assert "data-api-key-secret" not in page
    assert not ApiKey.objects.filter(organisation=world.org_a).exists()


def test_members_cannot_use_the_keys_page(world, make_key):
    key, secret = make_key(["jobs:read"])
    page = Client()
    page.force_login(world.member_a)
    assert page.get("/api-keys").status_code == 403
    assert page.post("/api-keys/create", {"name": "mine", "scopes": ["jobs:read"]}).status_code == 403
    refused = page.post(f"/api-keys/{key.pk}/revoke", {"action": "revoke", "confirmed": "revoke"})
    assert refused.status_code == 403
    assert ApiKey.objects.filter(organisation=world.org_a).count() == 1
    assert key_client(secret).get("/api/v1/jobs").status_code == 200


def test_the_page_cannot_revoke_another_organisations_key(world, make_key):
    key, secret = make_key(["jobs:read"], org=world.org_b, created_by=world.admin_b)
    page = Client()
    page.force_login(world.admin_a)
    response = page.post(f"/api-keys/{key.pk}/revoke", {"action": "revoke", "confirmed": "revoke"})
    assert response.status_code == 404
    key.refresh_from_db()
    assert not key.revoked
    assert key_client(secret).get("/api/v1/jobs").status_code == 200


def test_a_key_with_a_nul_or_the_wrong_shape_is_refused_before_any_lookup(world, make_key):
    _, secret = make_key(["jobs:read"])
    for bad in (
        secret + "\x00",
        secret[:-1] + "\x00",
        secret.replace(".", "\x00"),
        secret + "x",
        "nx_live_" + "a" * 60,
    ):
        assert key_client(bad).get("/api/v1/jobs").status_code == 401


def test_a_new_keys_secret_is_never_cached(world, api_as, client):
    response = api_as(world.admin_a).post(
        "/api/v1/api-keys", {"name": "fresh", "scopes": ["jobs:read"]}, format="json"
    )
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    client.force_login(world.admin_a)
    page = client.get("/api-keys")
    assert "no-store" in page["Cache-Control"] or "no-cache" in page["Cache-Control"]


def test_another_admin_replaying_the_idempotency_key_never_gets_the_first_secret(world, api_as):
    second = User.objects.create_user("second-admin@org-a.test", organisation=world.org_a, role=Role.ADMIN)
    body = {"name": "replayed", "scopes": ["jobs:read"]}
    headers = {"HTTP_IDEMPOTENCY_KEY": "same-key-1"}
    first = api_as(world.admin_a).post("/api/v1/api-keys", body, format="json", **headers)
    again = api_as(world.admin_a).post("/api/v1/api-keys", body, format="json", **headers)
    other = api_as(second).post("/api/v1/api-keys", body, format="json", **headers)
    assert first.status_code == again.status_code == other.status_code == 201
    # The first admin's retry is a replay; the second admin's request is a request of their own.
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["key"] == first.json()["data"]["key"]
    assert other.json()["data"]["key"] != first.json()["data"]["key"]
    assert other.json()["data"]["created_by"] == "second-admin@org-a.test"
