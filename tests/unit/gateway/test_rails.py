"""Rail building blocks without a server: secrets at rest, the bank_api configuration and payment
body, and the outbound address rules."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from gateway.rails.bank_api import check_config, payment_body
from gateway.rails.base import Payment, RailConfigError, RailRefused
from gateway.rails.outbound import ALLOW_PRIVATE_ENV, check_url, pin
from gateway.rails.secrets import SecretsUnreadable, seal, unseal

PAY = Payment("exe_1", "exe_1", "acme", "act_1", "0x" + "00" * 32,
              {"type": "pay_invoice", "amount": "7800.00", "asset": "EURC", "vendor": "acme-supplies",
               "payee": {"iban": "DE89370400440532013000"}, "invoice_id": "inv_8231"})  # fmt: skip


def test_sealed_secrets_open_only_for_their_rail_and_key():
    key = os.urandom(32)
    sealed = seal(key, "acme", "bank_api", {"api_key": "sk_live_1"})
    assert b"sk_live_1" not in sealed
    assert unseal(key, "acme", "bank_api", sealed) == {"api_key": "sk_live_1"}
    assert seal(key, "acme", "bank_api", {"api_key": "sk_live_1"}) != sealed  # fresh nonce
    for tenant, name, other_key in (
        ("globex", "bank_api", key),
        ("acme", "ops", key),
        ("acme", "bank_api", b"\x01" * 32),
    ):
        with pytest.raises(SecretsUnreadable):
            unseal(other_key, tenant, name, sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SecretsUnreadable):
        unseal(key, "acme", "bank_api", bytes(tampered))


def test_minimal_config_gets_pay_invoice_defaults():
    config = check_config({"base_url": "https://bank.example/v1/", "api_key": "sk"})
    assert config["base_url"] == "https://bank.example/v1"
    assert config["fields"]["amount"] == "amount" and config["fields"]["currency"] == "asset"
    assert config["fields"]["creditor_name"] == "vendor" and config["reversible"] is True
    body = payment_body(config["fields"], PAY)
    assert body == {"amount": "7800.00", "currency": "EURC", "creditor": {"name": "acme-supplies"},
                    "reference": "act_1", "end_to_end_id": "exe_1"}  # fmt: skip


def test_field_paths_map_the_action_onto_the_payment():
    config = check_config({"base_url": "https://bank.example", "api_key": "sk",
                           "fields": {"creditor_iban": "payee.iban", "end_to_end_id": "invoice_id"}})  # fmt: skip
    body = payment_body(config["fields"], PAY)
    assert body["creditor"] == {"name": "acme-supplies", "iban": "DE89370400440532013000"}
    assert body["end_to_end_id"] == "inv_8231"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"base_url": "https://bank.example"}, "config.api_key"),
        ({"base_url": "ftp://bank.example", "api_key": "k"}, "config.base_url"),
        (
            {"base_url": "https://bank.example", "api_key": "k", "timeout_seconds": 0},
            "config.timeout_seconds",
        ),
        (
            {"base_url": "https://bank.example", "api_key": "k", "fields": {"amount": "a..b"}},
            "config.fields.amount",
        ),
        (
            {"base_url": "https://bank.example", "api_key": "k", "fields": {"amount": None}},
            "config.fields.amount",
        ),
        ({"base_url": "https://bank.example", "api_key": "k", "colour": 1}, "config"),
        ({"base_url": "https://bank.example", "api_key": "k", "reversible": "no"}, "config.reversible"),
    ],
)
def test_bad_configs_name_the_member(config, field):
    with pytest.raises(RailConfigError) as caught:
        check_config(config)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "action",
    [
        {"type": "pay_invoice", "asset": "USDC", "vendor": "v"},  # no amount
        {"type": "pay_invoice", "amount": "1e3", "asset": "USDC", "vendor": "v"},
        {"type": "pay_invoice", "amount": "-5.00", "asset": "USDC", "vendor": "v"},
        {"type": "pay_invoice", "amount": "5.00", "asset": "USDC", "vendor": {"name": "v"}},
    ],
)
def test_actions_that_cannot_be_payments_are_unmappable(action):
    config = check_config({"base_url": "https://bank.example", "api_key": "k"})
    with pytest.raises(RailRefused) as caught:
        payment_body(config["fields"], Payment("exe_1", "exe_1", "acme", "act_1", "0x", action))
    assert caught.value.code == "payment_unmappable"


@pytest.mark.parametrize(
    "url",
    ["http://bank.example", "https://127.0.0.1", "https://10.1.2.3/v1", "https://169.254.169.254",
     "https://[::1]:8443", "https://localhost", "https://metadata.google.internal", "https://u:p@bank.example",
     "https://bank.example/?x=1"],
)  # fmt: skip
def test_outbound_rules_refuse_private_and_plain_urls(url, monkeypatch):
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
    with pytest.raises(RailConfigError):
        check_url(url)


def test_operator_may_allow_a_private_bank(monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    assert check_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    monkeypatch.delenv(ALLOW_PRIVATE_ENV)
    assert check_url("https://93.184.216.34/v1") == "https://93.184.216.34/v1"


class ChangingDns:
    """A resolver whose answer for a name changes between lookups (DNS rebinding): the loop's
    getaddrinfo, answering from a list."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)

    async def __call__(self, host, port, **_):
        address = self.answers.pop(0)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, 0))]


async def test_a_request_goes_to_the_address_that_was_checked(monkeypatch):
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
    dns = ChangingDns("93.184.216.34", "10.0.0.7", "2606:2800:220:1::1")
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", dns)
    first = await pin("https://bank.example:8443/v1/payments")
    assert first.url == "https://93.184.216.34:8443/v1/payments"
    assert first.headers == {"Host": "bank.example:8443"}
    assert first.extensions == {"sni_hostname": "bank.example"}  # TLS verifies the name
    with pytest.raises(RailConfigError):  # the name now points inside: refused, not followed
        await pin("https://bank.example:8443/v1/payments")
    third = await pin("https://bank.example/v1")
    assert third.url == "https://[2606:2800:220:1::1]/v1" and third.headers == {"Host": "bank.example"}


async def test_with_private_targets_allowed_the_url_is_used_as_given(monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    pinned = await pin("http://127.0.0.1:8080/payments")
    assert pinned.url == "http://127.0.0.1:8080/payments" and pinned.headers == {} and pinned.extensions == {}
