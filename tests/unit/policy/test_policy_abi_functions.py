"""`abi_address` / `abi_uint`: a `when` reads an evm_call's ABI arguments (an ERC-20 transfer's
recipient and amount); malformed data makes the rule an error, and the policy fails closed."""

from __future__ import annotations

import pytest

from policy.abi_functions import abi_address, abi_uint
from tests.unit.policy.test_policy_cel import evaluate_when

PAYEE = "0x" + "a1" * 20


def transfer(to: str, amount: int) -> str:
    return "0xa9059cbb" + to[2:].rjust(64, "0") + f"{amount:x}".rjust(64, "0")


def test_the_helpers_read_the_words_after_the_selector():
    data = transfer(PAYEE, 250_000_000)
    assert abi_address(data, 0) == PAYEE
    assert abi_uint(data, 1) == 250_000_000
    assert abi_uint(transfer(PAYEE.upper().replace("0X", "0x"), 1), 1) == 1


@pytest.mark.parametrize(
    ("data", "index", "message"),
    [
        ("0xa9059cbb", 0, "no argument 0"),
        (transfer(PAYEE, 1), 2, "no argument 2"),
        (transfer(PAYEE, 1)[:-2], 1, "no argument 1"),
        ("a9059cbb", 0, "0x and hex"),
        ("0xa9059cbbzz", 0, "0x and hex"),
        (transfer(PAYEE, 1), -1, "index"),
        (transfer("0x" + "ff" * 32, 1), 0, "not an address"),
        (transfer(PAYEE, 2**63), 1, "larger than a CEL int"),
    ],
)
def test_malformed_data_raises(data, index, message):
    with pytest.raises(ValueError, match=message):
        (abi_address if "address" in message or index == 0 else abi_uint)(data, index)


RULE = f'action.type == "evm_call" && abi_address(action.data, 0) == "{PAYEE}" && abi_uint(action.data, 1) <= 5000000000'


def test_a_when_matches_a_transfers_recipient_and_amount(build, decide):
    action = {"type": "evm_call", "data": transfer(PAYEE, 5_000_000_000)}
    assert evaluate_when(build, decide, RULE, action) == "hit"
    assert evaluate_when(build, decide, RULE, {**action, "data": transfer(PAYEE, 5_000_000_001)}) == "miss"
    assert evaluate_when(build, decide, RULE, {**action, "data": transfer("0x" + "b2" * 20, 1)}) == "miss"


def test_data_that_is_not_a_transfer_is_an_error_and_fails_closed(build, decide):
    outcome = evaluate_when(build, decide, RULE, {"type": "evm_call", "data": "0xa9059cbb"})
    assert "data has no argument" in outcome  # a policy error: the evaluation fails closed
