"""DNS rebinding over https: webhook deliveries and data-source fetches connect to the
address that passed the check while TLS verifies the certificate against the host name.

Two local TLS servers listen on the same port: the vetted one on 127.0.0.1 and a
"rebinding target" on 127.0.0.2. The resolver (patched at the network edge) answers the
check with 127.0.0.1 and every later lookup of the name with 127.0.0.2, as a rebinding
DNS server would. The client trusts only this test's CA (OUTBOUND_TLS_CA_FILE).
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django_tenants.utils import tenant_context

from etl.http import FetchError, SourceHttp

HOST = "hooks.test"
VETTED, REBOUND = "127.0.0.1", "127.0.0.2"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca: bool, dns_name: str | None = None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns_name:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and leaf certificates for HOST and for another name, written as PEM files."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Nexus test CA")
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for name in (HOST, "other.test"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(_name(name), ca_name, key.public_key(), ca_key, ca=False, dns_name=name)
        (directory / f"{name}.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return directory


class TlsServer:
    """An https server on (address, port) presenting the certificate for `cert_name`;
    records each request's Host header and the name the client sent in SNI."""

    def __init__(self, pki, address: str, port: int, cert_name: str, label: str):
        self.requests: list[dict] = []
        self.sni: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.requests.append(
                    {"method": self.command, "path": self.path, "host": self.headers["Host"]}
                )
                body = f"served by {label}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki / f"{cert_name}.pem")
        context.sni_callback = lambda sock, name, ctx: self.sni.append(name)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                return context.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request, client_address):
                pass  # a refused handshake is what some tests expect

        self._server = Server((address, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def servers(pki):
    """The vetted server and the rebinding target on the same port; `cert_name` chooses
    what the vetted server presents."""
    started = []

    def start(cert_name: str = HOST):
        vetted = TlsServer(pki, VETTED, 0, cert_name, "vetted")
        rebound = TlsServer(pki, REBOUND, vetted.port, HOST, "rebound")
        started.extend([vetted, rebound])
        return vetted, rebound

    yield start
    for server in started:
        server.close()


class RebindingResolver:
    """getaddrinfo for HOST: the first lookup (the address check) gets VETTED, every lookup
    after it REBOUND. Other names (and the address literals the client connects to) resolve
    as usual."""

    def __init__(self):
        self.lookups = 0
        self._real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):
        if host != HOST:
            return self._real(host, port, *args, **kwargs)
        self.lookups += 1
        address = VETTED if self.lookups == 1 else REBOUND
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    def rebind_after_next_lookup(self):
        self.lookups = 0


@pytest.fixture
def dns(monkeypatch):
    resolver = RebindingResolver()
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


@pytest.fixture
def trust_test_ca(settings, pki):
    # The rebinding target is on loopback too, so the address check itself must allow it.
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTBOUND_TLS_CA_FILE = str(pki / "ca.pem")


def test_the_rebinding_target_answers_whoever_resolves_the_name_again(servers, dns, pki):
    """The premise: a client that looks the name up again reaches the rebinding target."""
    vetted, _rebound = servers()
    dns.lookups = 1  # the check has happened
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    response = httpx.get(f"https://{HOST}:{vetted.port}/feed", verify=context, trust_env=False)
    assert response.text == "served by rebound"
    assert vetted.requests == []


def test_etl_https_fetch_goes_to_the_checked_address(servers, dns, trust_test_ca):
    vetted, rebound = servers()
    http = SourceHttp(requests_per_second=0)
    try:
        fetched = http.get(f"https://{HOST}:{vetted.port}/feed")
    finally:
        http.close()
    assert fetched.status_code == 200
    assert fetched.content == b"served by vetted"
    assert dns.lookups == 1  # only the check looked the name up
    assert vetted.requests == [{"method": "GET", "path": "/feed", "host": f"{HOST}:{vetted.port}"}]
    assert vetted.sni == [HOST]
    assert rebound.requests == []
    assert rebound.sni == []


def test_etl_https_certificate_is_verified_against_the_host_name(servers, dns, trust_test_ca, settings):
    settings.ETL_HTTP_RETRIES = 0
    vetted, rebound = servers(cert_name="other.test")
    http = SourceHttp(requests_per_second=0)
    try:
        with pytest.raises(FetchError, match=r"connection error \(ConnectError\)"):
            http.get(f"https://{HOST}:{vetted.port}/feed")
    finally:
        http.close()
    assert vetted.sni == [HOST]
    assert vetted.requests == []
    assert rebound.requests == []


def test_https_needs_a_certificate_the_trust_store_accepts(servers, dns, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.ETL_HTTP_RETRIES = 0
    vetted, _rebound = servers()  # signed by the test CA, which the default trust store lacks
    http = SourceHttp(requests_per_second=0)
    try:
        with pytest.raises(FetchError, match="ConnectError"):
            http.get(f"https://{HOST}:{vetted.port}/feed")
    finally:
        http.close()
    assert vetted.requests == []


@pytest.mark.django_db
def test_webhook_https_delivery_goes_to_the_checked_address(world, servers, dns, trust_test_ca, broker):
    from webhooks import services

    vetted, rebound = servers()
    with tenant_context(world.org_a):
        services.webhook_endpoint_create(
            url=f"https://{HOST}:{vetted.port}/hook", event_types=["job.completed"]
        )
        (delivery,) = services.webhook_publish(event_type="job.completed", data={})
        dns.rebind_after_next_lookup()
        attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert attempt.succeeded and attempt.status_code == 200, attempt.error
    assert dns.lookups == 1
    assert vetted.requests == [{"method": "POST", "path": "/hook", "host": f"{HOST}:{vetted.port}"}]
    assert vetted.sni == [HOST]
    assert rebound.requests == []


@pytest.mark.django_db
def test_webhook_https_certificate_for_another_name_fails_the_attempt(
    world, servers, dns, trust_test_ca, broker
):
    from webhooks import services

    vetted, rebound = servers(cert_name="other.test")
    with tenant_context(world.org_a):
        services.webhook_endpoint_create(
            url=f"https://{HOST}:{vetted.port}/hook", event_types=["job.completed"]
        )
        (delivery,) = services.webhook_publish(event_type="job.completed", data={})
        dns.rebind_after_next_lookup()
        attempt = services.webhook_attempt(delivery_id=delivery.pk)
    assert not attempt.succeeded
    assert attempt.status_code is None
    assert attempt.error == "Could not connect: ConnectError."
    assert vetted.requests == []
    assert rebound.requests == []
