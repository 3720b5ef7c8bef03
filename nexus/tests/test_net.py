"""Outbound URL checks: pinning plain-http requests to the address that was checked."""

from nexus.net import pinned


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
