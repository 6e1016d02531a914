"""Which webhook targets may be reached (SSRF), URL checks, Retry-After, and the sender's
refusal at send time."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from gateway.errors import Unprocessable
from gateway.events.outbound import Sender, address_allowed, check_url, retry_after_seconds

REFUSED = [
    "127.0.0.1", "127.255.0.1", "0.0.0.0", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "100.100.100.200", "192.0.0.170", "198.18.0.1", "224.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "2002:7f00:1::1", "ff02::1",
]  # fmt: skip
ALLOWED = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", REFUSED)
def test_non_public_addresses_are_refused(text):
    address = ipaddress.ip_address(text)
    assert not address_allowed(address, allow_private=False)
    assert address_allowed(address, allow_private=True)


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_are_allowed(text):
    assert address_allowed(ipaddress.ip_address(text), allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["http://example.com/", "ftp://example.com/", "https://u:p@example.com/", "https://example.com/#x",
     "https:///nohost", "https://example.com:99999/", "https://exa mple.com/", "https://example.com/" + "a" * 2048],
)  # fmt: skip
def test_urls_that_are_not_plain_https_are_refused(url):
    with pytest.raises(Unprocessable) as raised:
        check_url(url, allow_private=False)
    assert raised.value.code == "invalid_webhook_url"


def test_plain_http_only_when_private_targets_are_allowed():
    assert check_url("http://10.0.0.5:8080/hook", allow_private=True).port == 8080
    assert check_url("https://example.com/hook?x=1", allow_private=False).query == "x=1"


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("120", now.timestamp()) == 120.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(later, now.timestamp()) == 90.0
    assert retry_after_seconds(format_datetime(now - timedelta(hours=1), usegmt=True), now.timestamp()) == 0.0
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(unreadable, now.timestamp()) is None


@pytest.mark.parametrize("url", ["https://127.0.0.1:9/x", "https://[::1]:9/x", "https://localhost:9/x"])
async def test_the_sender_refuses_a_private_target_without_connecting(url):
    sender = Sender(allow_private=False, timeout=2)
    try:
        attempt = await sender.post(url, b"{}", {})
    finally:
        await sender.close()
    assert attempt.status_code is None and not attempt.delivered
    assert attempt.error is not None and attempt.error.startswith("webhook_target_refused")
