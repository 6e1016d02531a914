"""The VerdictAccount contract's interface (`contracts/VerdictAccount.sol`) as the gateway calls it.

Encodes `execute(to, value, data, verdict, signature)` from an `evm_call` and its signed verdict,
and names a revert from its custom-error selector. The signatures here are checked against the
compiled ABI in `contracts/artifacts/VerdictAccount.json` by tests/unit/contracts.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak

from crypto.eip712 import VerdictMessage
from crypto.evm_call import EvmCall

VERDICT_TUPLE = "(string,bytes32,string,string,uint8,uint64,bytes32,uint64,uint64)"
EXECUTE = f"execute(address,uint256,bytes,{VERDICT_TUPLE},bytes)"
EXECUTED_EVENT = "Executed(bytes32,address,uint256,bytes32,string)"
ERRORS: dict[str, tuple[str, ...]] = {
    "NotOwner": ("address",),
    "WrongChain": ("uint256", "uint256"),
    "ActionHashMismatch": ("bytes32", "bytes32"),
    "NotAllowed": ("uint8",),
    "VerdictExpired": ("uint64", "uint256"),
    "VerdictReplayed": ("string",),
    "InvalidSignature": (),
    "SignatureMalleable": ("bytes32",),
    "UnauthorisedSigner": ("address",),
    "CallFailed": ("bytes",),
    "ZeroAddress": (),
}
# Error(string) and Panic(uint256), which Solidity itself raises
_BUILTIN = {"Error": ("string",), "Panic": ("uint256",)}


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


EXECUTE_SELECTOR = selector(EXECUTE)
EXECUTED_TOPIC = "0x" + keccak(text=EXECUTED_EVENT).hex()
_BY_SELECTOR = {
    selector(f"{name}({','.join(types)})"): (name, types) for name, types in {**ERRORS, **_BUILTIN}.items()
}


def action_id_topic(action_id: str) -> str:
    """The indexed `actionIdHash` of the `Executed` event for `action_id`."""
    return "0x" + keccak(text=action_id).hex()


def encode_execute(call: EvmCall, verdict: VerdictMessage, signature: bytes) -> bytes:
    """The calldata of `execute` for `call` with `verdict` and its 65-byte signature."""
    fields = (
        verdict.action_id,
        verdict.action_hash,
        verdict.tenant,
        verdict.agent,
        verdict.decision,
        verdict.policy_version,
        verdict.policy_hash,
        verdict.issued_at,
        verdict.expires_at,
    )
    arguments = encode(
        ["address", "uint256", "bytes", VERDICT_TUPLE, "bytes"],
        [call.to, call.value, call.data, fields, signature],
    )
    return EXECUTE_SELECTOR + arguments


def decode_revert(data: bytes) -> tuple[str, list[Any]]:
    """The error name and arguments of revert data; ("execution_reverted", []) when unknown."""
    known = _BY_SELECTOR.get(data[:4])
    if known is None:
        return "execution_reverted", []
    name, types = known
    try:
        values = list(decode(list(types), data[4:])) if types else []
    except DecodingError:  # malformed arguments: keep the name
        values = []
    return name, [("0x" + value.hex()) if isinstance(value, bytes) else value for value in values]
