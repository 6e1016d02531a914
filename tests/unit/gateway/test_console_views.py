"""The console's pure helpers: time left, the history context in words, the SIWE message's form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from gateway.clock import rfc3339
from gateway.console import siwe
from gateway.console.views import describe_context, time_left

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "want"),
    [
        (timedelta(seconds=-1), "expired"),
        (timedelta(0), "expired"),
        (timedelta(seconds=30), "1 min left"),
        (timedelta(minutes=59, seconds=1), "1 h 00 min left"),
        (timedelta(hours=2, minutes=5), "2 h 05 min left"),
    ],
)
def test_time_left(delta, want):
    assert time_left(rfc3339(NOW + delta), NOW) == want
    assert time_left(None, NOW) == ""


def test_history_context_in_words():
    context = {"vendor.first_seen": False, "vendor.prior_count": 14, "agent.spend.24h": "12000.00", "x": 1}
    assert describe_context(context) == [
        "agent spent 12000.00 in the last 24h",
        "vendor known",
        "14 prior payments to this vendor",
        "x: 1",
    ]
    assert describe_context({"vendor.first_seen": True}) == ["new vendor: no earlier payment"]
    assert describe_context(None) == []


def test_the_sign_in_message_has_every_eip4361_field_and_personal_sign_recovers_it():
    account = Account.from_key("0x" + "11" * 32)
    message = siwe.sign_in_message("example.com", "https://example.com/console", account.address, 8453, NOW)
    assert message.text.split("\n") == [
        "example.com wants you to sign in with your Ethereum account:",
        account.address,
        "",
        siwe.STATEMENT,
        "",
        "URI: https://example.com/console",
        "Version: 1",
        "Chain ID: 8453",
        f"Nonce: {message.nonce}",
        f"Issued At: {rfc3339(NOW)}",
        f"Expiration Time: {rfc3339(NOW + siwe.MESSAGE_TTL)}",
    ]
    signature = bytes(Account.sign_message(encode_defunct(text=message.text), account.key).signature)
    assert siwe.recover_or_none(siwe.personal_message_digest(message.text), signature) == account.address
    assert (
        siwe.recover_or_none(siwe.personal_message_digest(message.text + " "), signature) != account.address
    )
    assert siwe.recover_or_none(b"\0" * 32, signature[:64]) is None


@pytest.mark.parametrize("bad", [None, "", "0x", "0xabc", "abcd", "0x" + "zz" * 65, 5])
def test_malformed_signatures_are_refused(bad):
    with pytest.raises(siwe.InvalidSignIn):
        siwe.parse_signature(bad)


@pytest.mark.parametrize("bad", [0, -1, True, "1", 2**53, None])
def test_chain_ids_outside_what_a_wallet_reports_are_refused(bad):
    with pytest.raises(siwe.InvalidSignIn):
        siwe.check_chain_id(bad)
