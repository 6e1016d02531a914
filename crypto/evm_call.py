"""The `evm_call` action: one call made by a smart account, in the exact form its contract rebuilds.

    {"account": "0x<lowercase hex>", "chain_id": <integer>, "data": "0x<lowercase hex>",
     "to": "0x<lowercase hex>", "type": "evm_call", "value": "<decimal string, wei>"}

These six members and no others. Their RFC 8785 form sorts the keys in that order and has no
whitespace, so `contracts/VerdictAccount.sol` concatenates the same bytes from `address(this)`,
`block.chainid` and its call parameters, and `keccak256` of them is the verdict's `actionHash`
(:func:`crypto.canonical.action_hash`). Any change to the account, the chain, the target, the
value or the data changes the hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crypto.canonical import action_hash
from crypto.errors import CryptoError

ACTION_TYPE = "evm_call"
MEMBERS = frozenset({"account", "chain_id", "data", "to", "type", "value"})
MAX_CHAIN_ID = 2**53 - 1  # RFC 8785: integers above this are not exact
MAX_VALUE = 2**256 - 1
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_DATA = re.compile(r"0x(?:[0-9a-f]{2})*")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,77}")


class EvmCallError(CryptoError):
    """An action is not a well-formed `evm_call` (the message names the member)."""


@dataclass(frozen=True, slots=True)
class EvmCall:
    """A parsed `evm_call`: addresses as lowercase hex, `data` as bytes, `value` in wei."""

    account: str
    chain_id: int
    to: str
    value: int
    data: bytes

    def action(self) -> dict[str, Any]:
        """The action document (the inverse of :func:`parse_evm_call`)."""
        return {
            "account": self.account,
            "chain_id": self.chain_id,
            "data": "0x" + self.data.hex(),
            "to": self.to,
            "type": ACTION_TYPE,
            "value": str(self.value),
        }

    def action_hash(self) -> bytes:
        """keccak256 of the action's RFC 8785 JSON: what the contract computes for this call."""
        return action_hash(self.action())

    @property
    def selector(self) -> str | None:
        """The 4-byte function selector of `data` as 0x-hex, or None for a plain transfer."""
        return "0x" + self.data[:4].hex() if len(self.data) >= 4 else None


def evm_call(account: str, chain_id: int, to: str, value: int, data: bytes = b"") -> EvmCall:
    """Build an `evm_call` from its parts (any address case). Raises EvmCallError."""
    return parse_evm_call(
        {
            "account": account.lower(),
            "chain_id": chain_id,
            "data": "0x" + data.hex(),
            "to": to.lower(),
            "type": ACTION_TYPE,
            "value": str(value),
        }
    )


def parse_evm_call(action: object) -> EvmCall:
    """Parse an action as an `evm_call`. Raises EvmCallError naming the first bad member."""
    if not isinstance(action, dict):
        raise EvmCallError("an evm_call action must be an object")
    if action.get("type") != ACTION_TYPE:
        raise EvmCallError(f"type must be {ACTION_TYPE!r}")
    extra = set(action) - MEMBERS
    missing = MEMBERS - set(action)
    if extra or missing:
        raise EvmCallError(
            f"an evm_call has exactly the members {', '.join(sorted(MEMBERS))}"
            + (f"; unknown: {', '.join(sorted(map(str, extra)))}" if extra else "")
            + (f"; missing: {', '.join(sorted(missing))}" if missing else "")
        )
    for name in ("account", "to"):
        if not isinstance(action[name], str) or not _ADDRESS.fullmatch(action[name]):
            raise EvmCallError(f"{name} must be 0x and 40 lowercase hex digits")
    chain_id = action["chain_id"]
    if type(chain_id) is not int or not 0 < chain_id <= MAX_CHAIN_ID:
        raise EvmCallError(f"chain_id must be an integer in [1, {MAX_CHAIN_ID}]")
    if not isinstance(action["data"], str) or not _DATA.fullmatch(action["data"]):
        raise EvmCallError("data must be 0x and an even number of lowercase hex digits")
    value = action["value"]
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value) or int(value) > MAX_VALUE:
        raise EvmCallError("value must be a decimal string of wei (no sign, no leading zeros, < 2**256)")
    return EvmCall(action["account"], chain_id, action["to"], int(value), bytes.fromhex(action["data"][2:]))
