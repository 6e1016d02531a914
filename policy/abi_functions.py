"""CEL helpers that read an `evm_call`'s ABI-encoded arguments, so a policy can match what a
call does (ERC-20 `transfer(address,uint256)`: the recipient and the amount), not only its bytes.

    abi_address(action.data, 0) in lists.payees        # the first argument, as 0x + 40 lowercase hex
    abi_uint(action.data, 1) <= 5000000000             # the second, as an integer (< 2**63)

Arguments are the 32-byte words after the 4-byte selector (the Solidity ABI's head; static
types only). A word that is missing, data that is not 0x-hex, an address word with bits above
160, or an integer too large for CEL's int raises ValueError: the rule is then in error, and
the policy fails closed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_MAX_INDEX = 64
_CEL_INT_MAX = 2**63 - 1


def _word(data: Any, index: Any) -> int:
    if not isinstance(data, str) or not _DATA.fullmatch(data):
        raise ValueError("data must be 0x and hex bytes")
    if type(index) is not int or not 0 <= index < _MAX_INDEX:
        raise ValueError(f"the argument index must be an integer in [0, {_MAX_INDEX})")
    start = 2 + 8 + 64 * index  # "0x", the selector, then 32-byte words
    word = data[start : start + 64]
    if len(word) != 64:
        raise ValueError(f"data has no argument {index}")
    return int(word, 16)


def abi_address(data: Any, index: Any) -> str:
    """The `index`-th argument as an address (0x + 40 lowercase hex). Raises ValueError."""
    value = _word(data, index)
    if value >> 160:
        raise ValueError(f"argument {index} is not an address")
    return "0x" + f"{value:040x}"


def abi_uint(data: Any, index: Any) -> int:
    """The `index`-th argument as an unsigned integer, at most 2**63 - 1. Raises ValueError."""
    value = _word(data, index)
    if value > _CEL_INT_MAX:
        raise ValueError(f"argument {index} is larger than a CEL int")
    return value


ABI_FUNCTIONS: dict[str, Callable[..., Any]] = {"abi_address": abi_address, "abi_uint": abi_uint}
