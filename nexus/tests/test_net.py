"""Outbound URL checks: which addresses count as public, and pinning plain-http requests
to the address that was checked."""

import ipaddress

import pytest

from nexus.net import _address_is_public, pinned


def test_plain_http_is_pinned_to_the_checked_address():
    assert pinned("http://hooks.example:8080/x?y=1", ["93.184.216.34"]) == (
        "http://93.184.216.34:8080/x?y=1",
        {"Host": "hooks.example:8080"},
    )
    assert pinned("http://hooks.example/x", ["2606:2800:220:1::1"]) == (
        "http://[2606:2800:220:1::1]/x",
        {"Host": "hooks.example"},
    )


def test_https_is_left_to_certificate_verification():
    assert pinned("https://hooks.example/x", ["93.184.216.34"]) == ("https://hooks.example/x", {})


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
