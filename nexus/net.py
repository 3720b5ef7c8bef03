"""Outbound URLs chosen by customers (webhook endpoints, ETL sources) must not reach our
own network: the host is resolved and every address it resolves to must be a public one.
Checked when the URL is saved and again right before each request (DNS can change), and
the request then connects to the address that was checked, for http and https alike, so
a second DNS answer (rebinding) cannot move it.

WEBHOOK_ALLOW_PRIVATE_NETWORKS=true lifts the address check, for development and tests
only (a receiver on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

# Cloud metadata services, named explicitly even where the ranges below already cover them.
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}


class UnsafeURL(ValueError):
    """The URL may not be fetched; the message says why in words a customer understands."""


# IPv6 forms that carry an IPv4 address a gateway may deliver to: judged by that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never a public destination: IPv4-compatible (deprecated), IPv4-translated (SIIT),
# local-use NAT64 and site-local (deprecated) prefixes.
_NOT_PUBLIC_V6 = tuple(
    ipaddress.ip_network(prefix) for prefix in ("::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48", "fec0::/10")
)


# IANA IPv4 and IPv6 special-purpose address registries: every block that is not globally
# reachable, plus whole blocks whose few "global" members are anycast services, never a
# customer's receiver. Listed although the standard library's is_global covers most of
# them: its list differs between Python releases (3.11.7 calls 192.0.0.9, 192.88.99.1,
# 3fff::1 and 5f00::1 global).
_SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(prefix)
    for prefix in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255/32
        "::/128",
        "::1/128",
        "::ffff:0:0/96",  # IPv4-mapped: a real host's AAAA record never holds one
        "100::/64",  # discard-only
        "100:0:0:1::/64",  # dummy prefix
        "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)


def _is_metadata(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A cloud metadata service's address, or an IPv6 form carrying one (mapped, 6to4,
    NAT64, translated)."""
    if address in METADATA_ADDRESSES:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and (address in _NAT64 or any(address in network for network in _NOT_PUBLIC_V6)):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        return embedded in METADATA_ADDRESSES
    return False


def _address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NOT_PUBLIC_V6):
            return False
        if any(address in network for network in _SPECIAL_PURPOSE if network.version == 6):
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
    if any(address in network for network in _SPECIAL_PURPOSE if network.version == address.version):
        return False
    return address.is_global and address not in METADATA_ADDRESSES and not address.is_multicast


def resolve_public_url(url: str, *, require_https: bool) -> list[str]:
    """Validate `url` for an outbound request and return the addresses its host resolves
    to. Raises UnsafeURL for a bad scheme, credentials in the URL, a host that does not
    resolve, or any address that is not public."""
    parts = urlsplit(url)
    allowed_schemes = {"https"} if require_https else {"https", "http"}
    if parts.scheme not in allowed_schemes:
        raise UnsafeURL(f"The URL must use {' or '.join(sorted(allowed_schemes))}.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeURL("The URL must not contain credentials.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL("The URL's port is invalid.") from exc
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"The host {parts.hostname!r} does not resolve.") from exc
    addresses = sorted({info[4][0] for info in infos})
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%")[0])
        # Cloud metadata services hand out credentials: refused even where private networks
        # are allowed (a development machine, the tests), since that machine may be a VM.
        if _is_metadata(address) or (
            not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and not _address_is_public(address)
        ):
            raise UnsafeURL(
                f"The host {parts.hostname!r} resolves to a private, loopback, link-local or "
                "metadata address; only public addresses can be called."
            )
    return addresses


@dataclass(frozen=True)
class Pinned:
    """How to send a request to the checked address: the URL with the address in place of
    the name, the Host header naming the original host, and for https the httpx request
    extension that makes TLS send that name (SNI) and verify the certificate against it."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def pinned(url: str, addresses: list[str]) -> Pinned:
    """`url` pinned to the first address that passed the check, so a second DNS answer
    cannot send the request elsewhere. For https the certificate is still verified against
    the original host name (sent as SNI), never against the address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not addresses or not parts.hostname:
        return Pinned(url)
    address = addresses[0].split("%")[0]
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    try:  # headers and SNI carry the ASCII (IDNA) form of an international name
        name = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        name = parts.hostname
    host_header = name + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": name} if parts.scheme == "https" else {}
    return Pinned(parts._replace(netloc=netloc).geturl(), {"Host": host_header}, extensions)


def outbound_verify() -> ssl.SSLContext | bool:
    """The certificate check for outbound https: the default trust store, or only the CA
    bundle in OUTBOUND_TLS_CA_FILE (tests trust their own CA this way)."""
    cafile = settings.OUTBOUND_TLS_CA_FILE
    return ssl.create_default_context(cafile=cafile) if cafile else True


def read_limited(response, *, limit: int, deadline: float) -> tuple[bytes, bool]:
    """Read a streamed httpx response up to `limit` bytes and until `deadline`
    (time.monotonic()). Returns the bytes and whether the body was cut short."""
    import time

    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or time.monotonic() > deadline:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def web_url(value: str | None) -> str | None:
    """`value` if it is an http(s) link with a host, else None: links from outside data are
    shown in our pages, where a `javascript:` or `data:` URL would run when clicked."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _token_like(segment: str) -> bool:
    """A path segment that looks like a secret: 16 or more characters mixing letters and
    digits, or 24 or more of any kind (Slack's, Discord's and Teams' webhook URLs carry
    their key in the path)."""
    mixed = any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment)
    return len(segment) >= 24 or (len(segment) >= 16 and mixed)


def url_on_record(url: str) -> str:
    """A URL as records kept for people (the audit log) show it: no credentials, query or
    fragment, where receivers and APIs put their tokens, and no path segment that looks like
    a token (masked as `…`)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return ""
    path = "/".join("…" if _token_like(segment) else segment for segment in parts.path.split("/"))
    return urlunsplit((parts.scheme, host, path, "", ""))


def request_address(request) -> str:
    """The caller's address as given: REMOTE_ADDR, or with RATE_LIMIT_TRUSTED_PROXIES = n
    the n-th address from the right of X-Forwarded-For (what our own proxies appended;
    anything further left is the client's say and can be forged). Not parsed: callers
    decide what an unparsable value means."""
    address = request.META.get("REMOTE_ADDR", "")
    proxies = settings.RATE_LIMIT_TRUSTED_PROXIES
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    return address
