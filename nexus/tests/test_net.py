"""Outbound URL checks: which addresses count as public, and pinning requests to the
address that was checked (the https handshake is proven in test_net_tls.py)."""

import ipaddress
import socket

import pytest

from nexus.net import Pinned, UnsafeURL, _address_is_public, pinned, resolve_public_url


def test_plain_http_is_pinned_to_the_checked_address():
    assert pinned("http://hooks.example:8080/x?y=1", ["93.184.216.34"]) == Pinned(
        "http://93.184.216.34:8080/x?y=1", {"Host": "hooks.example:8080"}
    )
    assert pinned("http://hooks.example/x", ["2606:2800:220:1::1"]) == Pinned(
        "http://[2606:2800:220:1::1]/x", {"Host": "hooks.example"}
    )


def test_https_is_pinned_too_and_tls_is_told_the_original_name():
    assert pinned("https://hooks.example/x", ["93.184.216.34"]) == Pinned(
        "https://93.184.216.34/x", {"Host": "hooks.example"}, {"sni_hostname": "hooks.example"}
    )
    assert pinned("https://Bücher.example:8443/x", ["93.184.216.34"]) == Pinned(
        "https://93.184.216.34:8443/x",
        {"Host": "xn--bcher-kva.example:8443"},
        {"sni_hostname": "xn--bcher-kva.example"},
    )


# The IANA IPv4 and IPv6 special-purpose registries: every block that is not globally
# reachable (first, last and one inner address of each), and the anycast blocks refused whole.
SPECIAL_PURPOSE = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.0.0/29",
    "192.0.0.8/32",
    "192.0.0.9/32",
    "192.0.0.10/32",
    "192.0.0.170/31",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b:1::/48",
    "100::/64",
    "100:0:0:1::/64",
    "2001::/23",
    "2001::/32",
    "2001:1::1/128",
    "2001:1::2/128",
    "2001:1::3/128",
    "2001:2::/48",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:10::/28",
    "2001:20::/28",
    "2001:30::/28",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]


def _samples(prefix):
    network = ipaddress.ip_network(prefix)
    return sorted({network[0], network[-1], network[network.num_addresses // 2]})


@pytest.mark.parametrize("address", [str(a) for prefix in SPECIAL_PURPOSE for a in _samples(prefix)])
def test_every_special_purpose_address_is_refused(address):
    assert not _address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.100.100.200",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "::8.8.8.8",
        "64:ff9b:1::808:808",  # local-use NAT64
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
        "::ffff:0:808:808",  # IPv4-translated, even of a public address
        "fec0::1",  # site-local (deprecated)
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "ff02::1",
    ],
)
def test_addresses_that_can_reach_private_networks_are_not_public(address):
    assert not _address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:2800:220:1::1", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_and_their_ipv6_forms_are_public(address):
    assert _address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::"],
)
def test_metadata_addresses_are_refused_even_where_private_networks_are_allowed(
    settings, monkeypatch, address
):
    """A development machine (make up) allows private receivers, but it may be a cloud VM whose
    metadata service hands out credentials."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, **kwargs: [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port))],
    )
    with pytest.raises(UnsafeURL, match="metadata"):
        resolve_public_url("http://metadata.internal/computeMetadata/v1/", require_https=False)


def test_private_addresses_are_allowed_where_configured(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, **kwargs: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))],
    )
    assert resolve_public_url("http://receiver.local:9000/hook", require_https=False) == ["127.0.0.1"]
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(UnsafeURL):
        resolve_public_url("http://receiver.local:9000/hook", require_https=False)


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        (
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/T00000000/B00000000/…",
        ),
        (
            "https://discord.com/api/webhooks/123456789012345678/abcDEF123ghiJKL456mno",
            "https://discord.com/api/webhooks/123456789012345678/…",
        ),
        ("https://user:pw@example.com:8443/hooks/in?token=abc#frag", "https://example.com:8443/hooks/in"),
        ("https://example.com/api/v1/items", "https://example.com/api/v1/items"),
    ],
)
def test_a_url_on_record_keeps_no_credential_query_or_token_like_segment(url, recorded):
    from nexus.net import url_on_record

    assert url_on_record(url) == recorded
