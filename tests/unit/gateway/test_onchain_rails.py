"""The smart_account and x402 rails' configuration checks, and how x402 reads requirements."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import httpx
import pytest

from gateway.rails.base import RailConfigError
from gateway.rails.smart_account import check_config as check_smart_account
from gateway.rails.x402 import X402Rail
from gateway.rails.x402 import check_config as check_x402

KEY = "0x" + "11" * 32
TOKEN = "0x" + "aa" * 20
OPTION = {
    "scheme": "exact",
    "network": "eip155:8453",
    "asset": TOKEN,
    "amount": "10000",
    "payTo": "0x" + "bb" * 20,
}
WANTED = {"network": "eip155:8453", "asset": TOKEN, "max_atomic": Decimal(50000)}


def smart(**changes):
    return {"rpc_url": "https://rpc.example", "chain_id": 8453, "account": "0x" + "ab" * 20,
            "relayer_key": KEY, **changes}  # fmt: skip


def test_smart_account_defaults_and_checksummed_account():
    config = check_smart_account(smart())
    assert config["account"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert (config["confirmations"], config["gas_limit"], config["start_block"]) == (1, 600_000, 0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rpc_url": "http://rpc.example"}, "config.rpc_url"),
        ({"rpc_url": "https://10.0.0.1"}, "config.rpc_url"),
        ({"chain_id": 0}, "config.chain_id"),
        ({"account": "0x12"}, "config.account"),
        ({"relayer_key": "0x12"}, "config.relayer_key"),
        ({"confirmations": 0}, "config.confirmations"),
        ({"receipt_timeout_seconds": 120}, "config.receipt_timeout_seconds"),
        ({"extra": 1}, "config"),
    ],
)
def test_smart_account_refuses_bad_members_by_name(change, field):
    with pytest.raises(RailConfigError) as caught:
        check_smart_account(smart(**change))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"rpc_url": "https://rpc.example"}, "config.payer_key"),
        ({"payer_key": KEY}, "config.rpc_url"),
        ({"payer_key": KEY, "rpc_url": "https://rpc.example", "decimals": 40}, "config.decimals"),
        ({"payer_key": KEY, "rpc_url": "https://rpc.example", "max_body_bytes": -1}, "config.max_body_bytes"),
    ],
)
def test_x402_refuses_bad_members_by_name(config, field):
    with pytest.raises(RailConfigError) as caught:
        check_x402(config)
    assert caught.value.field == field


@pytest.fixture
def rail():
    return X402Rail(check_x402({"payer_key": KEY, "rpc_url": "https://rpc.example"}), {"payer_key": KEY})


def header(document) -> dict[str, str]:
    return {"PAYMENT-REQUIRED": base64.b64encode(json.dumps(document).encode()).decode()}


def test_version_2_requirements_come_from_the_header(rail):
    response = httpx.Response(402, headers=header({"x402Version": 2, "accepts": [OPTION]}), content=b"{}")
    assert rail._pick(response, WANTED) == (2, OPTION, [OPTION])


def test_version_1_requirements_come_from_the_body(rail):
    option = {**{k: v for k, v in OPTION.items() if k != "amount"}, "maxAmountRequired": "10000"}
    response = httpx.Response(402, json={"x402Version": 1, "accepts": [option]})
    assert rail._pick(response, WANTED) == (1, option, [option])


@pytest.mark.parametrize(
    "change",
    [{"scheme": "upto"}, {"network": "eip155:1"}, {"asset": "0x" + "cc" * 20}, {"amount": "50001"},
     {"amount": "1e3"}, {"payTo": "nowhere"}],
)  # fmt: skip
def test_an_option_outside_the_verdict_is_not_picked(rail, change):
    offered = {**OPTION, **change}
    response = httpx.Response(402, headers=header({"x402Version": 2, "accepts": [offered]}))
    assert rail._pick(response, WANTED) == (2, None, [offered])


def test_the_first_fitting_option_is_picked_among_several(rail):
    dear = {**OPTION, "amount": "90000"}
    response = httpx.Response(402, headers=header({"x402Version": 2, "accepts": [dear, OPTION]}))
    assert rail._pick(response, WANTED)[1] == OPTION


def test_unreadable_requirements_offer_nothing(rail):
    for response in (
        httpx.Response(402, content=b"not json"),
        httpx.Response(402, headers={"PAYMENT-REQUIRED": "%%%"}),
    ):
        assert rail._pick(response, WANTED)[1:] == (None, [])
