"""The `evm_call` action: its exact form, and every malformed member refused by name."""

from __future__ import annotations

import pytest

from crypto.canonical import action_hash, canonicalize
from crypto.evm_call import EvmCallError, evm_call, parse_evm_call

GOOD = {
    "account": "0x" + "ab" * 20,
    "chain_id": 8453,
    "data": "0xa9059cbb",
    "to": "0x" + "cd" * 20,
    "type": "evm_call",
    "value": "1000",
}


def test_the_canonical_form_is_the_bytes_the_contract_concatenates():
    call = parse_evm_call(GOOD)
    assert canonicalize(call.action()) == (
        b'{"account":"0x' + b"ab" * 20 + b'","chain_id":8453,"data":"0xa9059cbb","to":"0x' + b"cd" * 20
        + b'","type":"evm_call","value":"1000"}'
    )  # fmt: skip
    assert call.action_hash() == action_hash(GOOD)
    assert call.selector == "0xa9059cbb"
    assert evm_call("0x" + "AB" * 20, 8453, "0x" + "CD" * 20, 1000, bytes.fromhex("a9059cbb")) == call


@pytest.mark.parametrize(
    ("change", "member"),
    [
        ({"account": "0x" + "AB" * 20}, "account"),
        ({"to": "0x1234"}, "to"),
        ({"chain_id": "8453"}, "chain_id"),
        ({"chain_id": 0}, "chain_id"),
        ({"chain_id": 2**53}, "chain_id"),
        ({"data": "0xabc"}, "data"),
        ({"data": "0xABCD"}, "data"),
        ({"value": "01"}, "value"),
        ({"value": "-1"}, "value"),
        ({"value": "1.5"}, "value"),
        ({"value": 1}, "value"),
        ({"value": str(2**256)}, "value"),
        ({"type": "pay_invoice"}, "type"),
        ({"memo": "x"}, "unknown: memo"),
    ],
)
def test_a_malformed_member_is_refused_by_name(change, member):
    with pytest.raises(EvmCallError, match=member):
        parse_evm_call({**GOOD, **change})


def test_a_missing_member_is_refused():
    with pytest.raises(EvmCallError, match="missing: data"):
        parse_evm_call({k: v for k, v in GOOD.items() if k != "data"})
