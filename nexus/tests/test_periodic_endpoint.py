"""POST /internal/periodic/<entry>, Cloud Scheduler's alternative to beat: only a token
Google signed for the configured audience and service account queues the entry's task as
beat would; anything else is the 404 of a path nobody serves, and queues nothing. Google's
certificate endpoint is a local stand-in serving a certificate of a key the test holds, so
google-auth verifies real RS256 signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from nexus import google_oidc
from nexus.celery import NexusTask
from nexus.tests.stub_server import StubServer

pytestmark = pytest.mark.django_db

URL = "/internal/periodic/etl-dispatch-due"
AUDIENCE = "https://nexus.example.com/internal/periodic"
INVOKER = "etl-scheduler@nexus-prod.iam.gserviceaccount.com"
KEY_ID = "key-1"


def _key_and_certificate() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


GOOGLE_KEY, GOOGLE_CERT = _key_and_certificate()
OTHER_KEY, _ = _key_and_certificate()


def _token(key: bytes = GOOGLE_KEY, key_id: str | None = KEY_ID, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": INVOKER,
        "email_verified": True,
        "sub": "112233445566778899",
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    return jwt.encode(crypt.RSASigner.from_string(key, key_id=key_id), claims).decode()


@pytest.fixture
def google(settings):
    """Google's certificate endpoint; the endpoint enabled for INVOKER and AUDIENCE."""
    stub = StubServer()
    certs = {KEY_ID: GOOGLE_CERT}
    stub.route("GET", "/oauth2/v1/certs", lambda r: (200, {"Cache-Control": "public, max-age=3600"}, certs))
    with stub:
        settings.GOOGLE_OIDC_CERTS_URL = f"{stub.url}/oauth2/v1/certs"
        settings.PERIODIC_INVOKER = INVOKER
        settings.PERIODIC_AUDIENCE = AUDIENCE
        google_oidc._reset_cache()
        stub.certs = certs
        yield stub
    google_oidc._reset_cache()


def _unsigned(alg: str) -> str:
    """A token naming Google's key but another algorithm (none: no signature; HS256: one
    keyed with something public, the classic confusion)."""
    segment = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
    now = int(time.time())
    claims = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": INVOKER, "email_verified": True,
              "iat": now, "exp": now + 3600}  # fmt: skip
    unsigned = f"{segment({'alg': alg, 'kid': KEY_ID, 'typ': 'JWT'})}.{segment(claims)}"
    if alg == "none":
        return unsigned + "."
    signature = hmac.new(GOOGLE_CERT.encode(), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _post(client, token: str | None, url: str = URL):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.post(url, **headers)


def test_a_token_google_signed_for_the_scheduler_queues_the_etl_dispatch(client, google, broker):
    response = _post(client, _token())
    assert response.status_code == 202
    assert response.json() == {"entry": "etl-dispatch-due", "task": "etl.dispatch_due", "queued": True}
    (message,) = broker.messages
    assert (message.task, message.schema) == ("etl.dispatch_due", "public")


def test_every_entry_of_beats_schedule_can_be_triggered(client, google, broker, settings):
    for entry in settings.CELERY_BEAT_SCHEDULE:
        assert _post(client, _token(), f"/internal/periodic/{entry}").status_code == 202, entry
    assert [m.task for m in broker.messages] == [s["task"] for s in settings.CELERY_BEAT_SCHEDULE.values()]


def test_a_sweep_sent_once_a_minute_is_kept_a_minute(client, google, settings, monkeypatch):
    sent = []
    monkeypatch.setattr(NexusTask, "apply_async", lambda task, **options: sent.append((task.name, options)))
    assert settings.CELERY_BEAT_SCHEDULE["jobs-sweep"]["options"]["expires"] < 60
    assert _post(client, _token(), "/internal/periodic/jobs-sweep").status_code == 202
    assert sent == [("jobs.sweep", {"expires": 60})]


def test_an_entry_not_in_the_schedule_is_a_404_even_with_a_good_token(client, google, broker):
    for entry in ("no-such-entry", "etl.dispatch_due"):
        assert _post(client, _token(), f"/internal/periodic/{entry}").status_code == 404
    assert broker.messages == []


def test_the_schedule_is_not_revealed_without_a_good_token(client, google, broker):
    assert _post(client, _token(key=OTHER_KEY), "/internal/periodic/no-such-entry").status_code == 404
    assert _post(client, _token(key=OTHER_KEY), URL).status_code == 404
    assert broker.messages == []


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: _token(aud="https://nexus.example.com/other"), id="another audience"),
        pytest.param(lambda: _token(aud=f"{AUDIENCE}/etl-dispatch-due"), id="the URL as audience"),
        pytest.param(lambda: _token(email="other@nexus-prod.iam.gserviceaccount.com"), id="another account"),
        pytest.param(lambda: _token(email_verified=False), id="email not verified"),
        pytest.param(lambda: _token(iss="https://evil.example.com"), id="another issuer"),
        pytest.param(lambda: _token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), id="expired"),
        pytest.param(lambda: _token(key=OTHER_KEY), id="signed by another key"),
        pytest.param(lambda: _token(key=OTHER_KEY, key_id="key-unknown"), id="unknown key id"),
        pytest.param(lambda: _token()[:-5] + "AAAAA", id="tampered signature"),
        pytest.param(lambda: _token(key_id=None), id="no key id"),
        pytest.param(lambda: _unsigned("none"), id="alg none"),
        pytest.param(lambda: _unsigned("HS256"), id="alg HS256"),
        pytest.param(lambda: _token(padding="x" * 4000), id="well formed but too long"),
        pytest.param(lambda: "not-a-token", id="garbage"),
        pytest.param(lambda: "x" * 5000, id="too long"),
    ],
)
def test_any_other_token_is_a_404_and_queues_nothing(client, google, broker, token):
    response = _post(client, token())
    assert response.status_code == 404
    assert broker.messages == []


def test_no_token_or_another_method_is_a_404(client, google, broker):
    assert _post(client, None).status_code == 404
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {_token()}").status_code == 404
    assert client.post(URL, HTTP_AUTHORIZATION=f"Basic {_token()}").status_code == 404
    assert broker.messages == []


def test_disabled_unless_an_invoker_is_configured(client, google, broker, settings):
    settings.PERIODIC_INVOKER = ""
    assert _post(client, _token()).status_code == 404
    assert broker.messages == []
    assert google.requests == []  # not even Google's certificates are fetched


def test_certificates_are_fetched_once_and_a_new_key_at_most_once_a_minute(client, google, broker):
    for _ in range(3):
        assert _post(client, _token()).status_code == 202
    assert len(google.requests) == 1

    # Forged tokens naming keys Google never published do not make us fetch again and again.
    for n in range(5):
        assert _post(client, _token(key=OTHER_KEY, key_id=f"forged-{n}")).status_code == 404
    assert len(google.requests) == 1

    # Google rotates: the new key is published, and the first token signed with it (once the
    # cached copy is a minute old) fetches the certificates again.
    new_key, new_cert = _key_and_certificate()
    google.certs["key-2"] = new_cert
    google_oidc._last_attempt -= google_oidc.CERTS_MIN_SECONDS
    assert _post(client, _token(key=new_key, key_id="key-2")).status_code == 202
    assert len(google.requests) == 2


def test_fails_closed_when_googles_certificates_cannot_be_fetched(client, settings, broker):
    settings.PERIODIC_INVOKER = INVOKER
    settings.PERIODIC_AUDIENCE = AUDIENCE
    with StubServer() as down:  # answers 404 to everything
        settings.GOOGLE_OIDC_CERTS_URL = f"{down.url}/oauth2/v1/certs"
        google_oidc._reset_cache()
        assert _post(client, _token()).status_code == 404
    assert broker.messages == []
    google_oidc._reset_cache()


def test_a_broker_outage_is_a_503_the_scheduler_retries(client, google, broker):
    broker.down = True
    response = _post(client, _token())
    assert response.status_code == 503
    assert response["Retry-After"]
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_an_access_token_of_our_own_api_is_refused(client, google, broker, world):
    from tenants.services import token_pair_issue

    assert _post(client, token_pair_issue(user=world.admin_a).access).status_code == 404
    assert broker.messages == []


def test_an_unreachable_google_is_asked_at_most_once_a_minute(client, settings, broker):
    """Certificates never fetched, Google down: forged (or real) tokens do not each make a
    fetch that holds a server thread for its timeout."""
    settings.PERIODIC_INVOKER = INVOKER
    settings.PERIODIC_AUDIENCE = AUDIENCE
    with StubServer() as down:
        down.route("GET", "/oauth2/v1/certs", lambda r: (500, {}, {"error": "unavailable"}))
        settings.GOOGLE_OIDC_CERTS_URL = f"{down.url}/oauth2/v1/certs"
        google_oidc._reset_cache()
        for _ in range(5):
            assert _post(client, _token()).status_code == 404
        assert len(down.requests) == 1
    assert broker.messages == []
    google_oidc._reset_cache()


def test_expired_certificates_are_refetched_at_most_once_a_minute_and_kept_meanwhile(client, google, broker):
    assert _post(client, _token()).status_code == 202
    google_oidc._cache.expires_at = 0  # Google's max-age has passed, a minute after the fetch ...
    google_oidc._last_attempt -= google_oidc.CERTS_MIN_SECONDS
    google.routes[("GET", "/oauth2/v1/certs")] = lambda r: (
        500,
        {},
        {"error": "unavailable"},
    )  # ... and it is down
    for _ in range(5):
        assert _post(client, _token()).status_code == 202  # the certificates we had still verify
        assert _post(client, _token(key=OTHER_KEY, key_id="forged")).status_code == 404
    assert len(google.requests) == 2  # the first fetch, and one attempt since
