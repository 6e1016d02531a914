"""EIP-712 encoders for the structs Verdict signs: ``Verdict``, ``Approval`` and ``BulkApproval``.

Pure functions, no keys: signing lives in :mod:`crypto.signing`. The digests are
computed directly from precomputed type hashes (the fast path); the typed-data
documents are the ``eth_signTypedData_v4`` JSON that a wallet or an auditor
re-hashes independently (eth-account, viem, ethers; see ``tests/vectors/eip712``).
Field lists, validation and the JSON mapping are all derived from the type
strings below, so they cannot drift apart.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from crypto.canonical import keccak256 as _keccak
from crypto.errors import TypedDataError

__all__ = [
    "APPROVAL_ITEM_TYPE",
    "APPROVAL_TYPE",
    "BULK_APPROVAL_TYPE",
    "DECISION_ALLOW",
    "DOMAIN_NAME",
    "DOMAIN_TYPE",
    "DOMAIN_VERSION",
    "MAX_BULK_APPROVAL_ITEMS",
    "VERDICT_TYPE",
    "ApprovalItem",
    "ApprovalMessage",
    "BulkApprovalMessage",
    "Domain",
    "VerdictMessage",
    "approval_typed_data",
    "bulk_approval_typed_data",
    "domain_separator",
    "hash_approval",
    "hash_bulk_approval",
    "hash_verdict",
    "parse_approval_typed_data",
    "parse_bulk_approval_typed_data",
    "parse_verdict_typed_data",
    "to_checksum_address",
    "verdict_typed_data",
]

DOMAIN_NAME = "Verdict Gateway"
DOMAIN_VERSION = "1"
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
VERDICT_TYPE = (
    "Verdict(string actionId,bytes32 actionHash,string tenant,string agent,string actionType,"
    "uint8 decision,uint64 policyVersion,bytes32 policyHash,uint64 issuedAt,uint64 expiresAt)"
)
APPROVAL_TYPE = (
    "Approval(string actionId,bytes32 actionHash,string tenant,string role,bool approve,"
    "uint64 expiresAt,string summary)"
)
APPROVAL_ITEM_TYPE = "ApprovalItem(string actionId,bytes32 actionHash)"
# EIP-712 §Definition of encodeType: the referenced struct types follow the primary one, sorted by name.
BULK_APPROVAL_TYPE = (
    "BulkApproval(string tenant,string role,bool approve,uint64 deadline,ApprovalItem[] items)"
    + APPROVAL_ITEM_TYPE
)
DECISION_ALLOW = 1
MAX_BULK_APPROVAL_ITEMS = 100

# EIP-712 §Definition of hashStruct: typeHash = keccak256(encodeType(typeOf(s))).
_DOMAIN_TYPEHASH = _keccak(DOMAIN_TYPE.encode())
_VERDICT_TYPEHASH = _keccak(VERDICT_TYPE.encode())
_APPROVAL_TYPEHASH = _keccak(APPROVAL_TYPE.encode())
_APPROVAL_ITEM_TYPEHASH = _keccak(APPROVAL_ITEM_TYPE.encode())
_BULK_APPROVAL_TYPEHASH = _keccak(BULK_APPROVAL_TYPE.encode())
_NAME_HASH = _keccak(DOMAIN_NAME.encode())
_VERSION_HASH = _keccak(DOMAIN_VERSION.encode())
_BOOL_WORDS = {False: bytes(32), True: (1).to_bytes(32, "big")}  # EIP-712 §encodeData: bool as uint256
_ADDRESS_PATTERN = re.compile(r"0x[0-9a-fA-F]{40}")


def to_checksum_address(address: str | bytes) -> str:
    """The EIP-55 form of an address: ``0x`` + 40 hex digits (any case) or its 20 bytes.

    Each letter is upper case where the matching nibble of keccak256 of the lower-case hex
    digits is 8 or more. (eth-utils has the same function, but importing eth-utils, with the
    pydantic it brings, adds about 0.16 s to the start of every command.)

    Raises:
        ValueError: not 20 bytes, nor ``0x`` followed by 40 hex digits.
    """
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValueError(f"an address is 20 bytes, got {len(address)}")
        digits = address.hex()
    elif type(address) is str and _ADDRESS_PATTERN.fullmatch(address):
        digits = address[2:].lower()
    else:
        raise ValueError(f"not an address: {address!r}")
    nibbles = _keccak(digits.encode("ascii")).hex()
    return "0x" + "".join(d.upper() if n >= "8" else d for d, n in zip(digits, nibbles, strict=False))


_BYTES32_PATTERN = re.compile(r"0x[0-9a-fA-F]{64}")
_DOCUMENT_KEYS = {"types", "primaryType", "domain", "message"}


def _parse_members(type_string: str) -> list[dict[str, str]]:
    """Turn ``Name(type a,type b)…`` into eth_signTypedData's ``[{"name": a, "type": type}, ...]``.

    Only the first (primary) struct of an encodeType string is read.
    """
    members = type_string[type_string.index("(") + 1 : type_string.index(")")].split(",")
    return [{"name": name, "type": solidity_type} for solidity_type, name in (m.split(" ") for m in members)]


def _attribute_name(json_name: str) -> str:
    return re.sub("([A-Z])", r"_\1", json_name).lower()  # actionHash -> action_hash


_DOMAIN_MEMBERS = _parse_members(DOMAIN_TYPE)
_VERDICT_MEMBERS = _parse_members(VERDICT_TYPE)
_APPROVAL_MEMBERS = _parse_members(APPROVAL_TYPE)
_APPROVAL_ITEM_MEMBERS = _parse_members(APPROVAL_ITEM_TYPE)
_BULK_APPROVAL_MEMBERS = _parse_members(BULK_APPROVAL_TYPE)
# (JSON name, Python attribute, Solidity type) for each member, in type-string order.
_Layout = list[tuple[str, str, str]]


def _layout(members: list[dict[str, str]]) -> _Layout:
    return [(member["name"], _attribute_name(member["name"]), member["type"]) for member in members]


_VERDICT_LAYOUT = _layout(_VERDICT_MEMBERS)
_APPROVAL_LAYOUT = _layout(_APPROVAL_MEMBERS)
_APPROVAL_ITEM_LAYOUT = _layout(_APPROVAL_ITEM_MEMBERS)
_BULK_APPROVAL_LAYOUT = _layout(_BULK_APPROVAL_MEMBERS)


def _validate_members(struct: object, layout: _Layout) -> None:
    """Check each attribute against its Solidity type (the ones our structs use).

    Raises:
        TypedDataError: wrong Python type, integer out of ``uintN`` range, hash not
            32 bytes, a string that is not encodable as UTF-8 (lone surrogate), or an
            array that is not a tuple of its struct.
    """
    for _, name, solidity_type in layout:
        value = getattr(struct, name)
        if solidity_type.endswith("[]"):
            item_struct = _ARRAY_ITEMS[solidity_type][0]
            if type(value) is not tuple or not all(type(item) is item_struct for item in value):
                raise TypedDataError(f"{name} must be a tuple of {item_struct.__name__}, got {value!r}")
        elif solidity_type == "string":
            if type(value) is not str:
                raise TypedDataError(f"{name} must be a str, got {value!r}")
            try:
                value.encode()
            except UnicodeEncodeError as error:
                raise TypedDataError(f"{name} is not encodable as UTF-8: {error.reason}") from error
        elif solidity_type == "bytes32":
            if type(value) is not bytes or len(value) != 32:
                raise TypedDataError(f"{name} must be 32 bytes, got {value!r}")
        elif solidity_type == "bool":
            if type(value) is not bool:
                raise TypedDataError(f"{name} must be a bool, got {value!r}")
        else:
            bits = int(solidity_type.removeprefix("uint"))
            if type(value) is not int or not 0 <= value < 1 << bits:
                raise TypedDataError(f"{name} must be an int in [0, 2**{bits}), got {value!r}")


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain; name and version are fixed to this gateway's.

    Raises:
        TypedDataError: ``chain_id`` is not an int in [1, 2**256), or ``verifying_contract``
            is not an EIP-55 checksummed address.
    """

    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        if type(self.chain_id) is not int or not 0 < self.chain_id < 1 << 256:
            raise TypedDataError(f"chain_id must be an int in [1, 2**256), got {self.chain_id!r}")
        address = self.verifying_contract
        if type(address) is not str or not _ADDRESS_PATTERN.fullmatch(address):
            raise TypedDataError(f"verifying_contract must be 0x followed by 40 hex digits, got {address!r}")
        if to_checksum_address(address) != address:
            # EIP-55: a case typo must not silently bind signatures to some other contract.
            expected = to_checksum_address(address)
            raise TypedDataError(f"verifying_contract {address} is not EIP-55 checksummed ({expected})")


@dataclass(frozen=True, slots=True)
class VerdictMessage:
    """The ``Verdict`` struct: what the gateway decided about one action.

    Raises:
        TypedDataError: as for ``_validate_members``.
    """

    action_id: str
    action_hash: bytes
    tenant: str
    agent: str
    action_type: str
    decision: int
    policy_version: int
    policy_hash: bytes
    issued_at: int
    expires_at: int

    def __post_init__(self) -> None:
        _validate_members(self, _VERDICT_LAYOUT)


@dataclass(frozen=True, slots=True)
class ApprovalMessage:
    """The ``Approval`` struct: a human's answer to an escalated action.

    Raises:
        TypedDataError: as for ``_validate_members``.
    """

    action_id: str
    action_hash: bytes
    tenant: str
    role: str
    approve: bool
    expires_at: int
    summary: str

    def __post_init__(self) -> None:
        _validate_members(self, _APPROVAL_LAYOUT)


@dataclass(frozen=True, slots=True)
class ApprovalItem:
    """One ``ApprovalItem`` of a ``BulkApproval``: which action, and the hash of what it does.

    Raises:
        TypedDataError: as for ``_validate_members``.
    """

    action_id: str
    action_hash: bytes

    def __post_init__(self) -> None:
        _validate_members(self, _APPROVAL_ITEM_LAYOUT)


# Solidity array type -> (Python struct of its items, layout of that struct).
_ARRAY_ITEMS: dict[str, tuple[type, _Layout]] = {"ApprovalItem[]": (ApprovalItem, _APPROVAL_ITEM_LAYOUT)}


@dataclass(frozen=True, slots=True)
class BulkApprovalMessage:
    """The ``BulkApproval`` struct: one answer from one approver to several escalated actions.

    ``items`` is a tuple of 1 to :data:`MAX_BULK_APPROVAL_ITEMS` items with distinct
    action ids; their order is signed (reordering them changes the digest).

    Raises:
        TypedDataError: as for ``_validate_members``; no items, more than
            :data:`MAX_BULK_APPROVAL_ITEMS`, or an action id listed twice.
    """

    tenant: str
    role: str
    approve: bool
    deadline: int
    items: tuple[ApprovalItem, ...]

    def __post_init__(self) -> None:
        _validate_members(self, _BULK_APPROVAL_LAYOUT)
        if not 1 <= len(self.items) <= MAX_BULK_APPROVAL_ITEMS:
            raise TypedDataError(
                f"items must hold 1 to {MAX_BULK_APPROVAL_ITEMS} approval items, got {len(self.items)}"
            )
        if len({item.action_id for item in self.items}) != len(self.items):
            raise TypedDataError("items must not list the same action id twice")


@functools.lru_cache(maxsize=64)
def domain_separator(domain: Domain) -> bytes:
    """Return ``hashStruct(EIP712Domain)`` for ``domain`` (EIP-712 §Definition of domainSeparator)."""
    return _keccak(
        _DOMAIN_TYPEHASH
        + _NAME_HASH
        + _VERSION_HASH
        + domain.chain_id.to_bytes(32, "big")
        + bytes(12)  # EIP-712 §encodeData: an address is encoded as uint160
        + bytes.fromhex(domain.verifying_contract[2:])
    )


@functools.lru_cache(maxsize=4096)
def _keccak_text(text: str) -> bytes:
    """keccak256 of a string that recurs across messages (tenant, agent, action type, role)."""
    return _keccak(text.encode())


def hash_verdict(domain: Domain, msg: VerdictMessage) -> bytes:
    """Return the 32-byte digest ``keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(msg))``."""
    # EIP-712 §encodeData: string -> keccak256(UTF-8), bytes32 as is, uintN -> 32-byte big-endian.
    struct_hash = _keccak(
        b"".join(
            (
                _VERDICT_TYPEHASH,
                _keccak(msg.action_id.encode()),
                msg.action_hash,
                _keccak_text(msg.tenant),
                _keccak_text(msg.agent),
                _keccak_text(msg.action_type),
                msg.decision.to_bytes(32, "big"),
                msg.policy_version.to_bytes(32, "big"),
                msg.policy_hash,
                msg.issued_at.to_bytes(32, "big"),
                msg.expires_at.to_bytes(32, "big"),
            )
        )
    )
    return _keccak(b"\x19\x01" + domain_separator(domain) + struct_hash)


def hash_approval(domain: Domain, msg: ApprovalMessage) -> bytes:
    """Return the 32-byte EIP-712 digest of an ``Approval``."""
    struct_hash = _keccak(
        b"".join(
            (
                _APPROVAL_TYPEHASH,
                _keccak(msg.action_id.encode()),
                msg.action_hash,
                _keccak_text(msg.tenant),
                _keccak_text(msg.role),
                _BOOL_WORDS[msg.approve],
                msg.expires_at.to_bytes(32, "big"),
                _keccak(msg.summary.encode()),
            )
        )
    )
    return _keccak(b"\x19\x01" + domain_separator(domain) + struct_hash)


def hash_bulk_approval(domain: Domain, msg: BulkApprovalMessage) -> bytes:
    """Return the 32-byte EIP-712 digest of a ``BulkApproval``."""
    # EIP-712 §encodeData: an array is keccak256 of the concatenated encodeData of its elements,
    # and a struct element is encoded as its hashStruct.
    item_hashes = b"".join(
        _keccak(_APPROVAL_ITEM_TYPEHASH + _keccak(item.action_id.encode()) + item.action_hash)
        for item in msg.items
    )
    struct_hash = _keccak(
        b"".join(
            (
                _BULK_APPROVAL_TYPEHASH,
                _keccak_text(msg.tenant),
                _keccak_text(msg.role),
                _BOOL_WORDS[msg.approve],
                msg.deadline.to_bytes(32, "big"),
                _keccak(item_hashes),
            )
        )
    )
    return _keccak(b"\x19\x01" + domain_separator(domain) + struct_hash)


# primaryType -> its eth_signTypedData ``types`` (without EIP712Domain), primary type first.
_VERDICT_TYPES = {"Verdict": _VERDICT_MEMBERS}
_APPROVAL_TYPES = {"Approval": _APPROVAL_MEMBERS}
_BULK_APPROVAL_TYPES = {"BulkApproval": _BULK_APPROVAL_MEMBERS, "ApprovalItem": _APPROVAL_ITEM_MEMBERS}


def verdict_typed_data(domain: Domain, msg: VerdictMessage) -> dict[str, Any]:
    """Return the ``eth_signTypedData_v4`` document for a ``Verdict`` (a fresh dict each call)."""
    return _build_document(domain, _VERDICT_TYPES, _VERDICT_LAYOUT, msg)


def approval_typed_data(domain: Domain, msg: ApprovalMessage) -> dict[str, Any]:
    """Return the ``eth_signTypedData_v4`` document for an ``Approval`` (a fresh dict each call)."""
    return _build_document(domain, _APPROVAL_TYPES, _APPROVAL_LAYOUT, msg)


def bulk_approval_typed_data(domain: Domain, msg: BulkApprovalMessage) -> dict[str, Any]:
    """Return the ``eth_signTypedData_v4`` document for a ``BulkApproval`` (a fresh dict each call).

    ``types`` holds ``EIP712Domain``, ``BulkApproval`` and ``ApprovalItem``.
    """
    return _build_document(domain, _BULK_APPROVAL_TYPES, _BULK_APPROVAL_LAYOUT, msg)


def _message_json(layout: _Layout, msg: object) -> dict[str, Any]:
    message: dict[str, Any] = {}
    for json_name, name, solidity_type in layout:
        value = getattr(msg, name)
        if solidity_type == "bytes32":
            value = "0x" + value.hex()
        elif solidity_type.endswith("[]"):
            item_layout = _ARRAY_ITEMS[solidity_type][1]
            value = [_message_json(item_layout, item) for item in value]
        message[json_name] = value
    return message


def _build_document(
    domain: Domain, types: dict[str, list[dict[str, str]]], layout: _Layout, msg: object
) -> dict[str, Any]:
    primary_type = next(iter(types))
    return {
        "types": {
            "EIP712Domain": [dict(member) for member in _DOMAIN_MEMBERS],
            **{name: [dict(member) for member in members] for name, members in types.items()},
        },
        "primaryType": primary_type,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": domain.chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": _message_json(layout, msg),
    }


def parse_verdict_typed_data(typed_data: object) -> tuple[Domain, VerdictMessage]:
    """Parse a ``Verdict`` document strictly; the inverse of :func:`verdict_typed_data`.

    EIP-712 encoders are lenient (eth-account hashes ``"5"`` like ``5`` and pads short
    hex strings), so a document is accepted only if it reads exactly one way.

    Raises:
        TypedDataError: the document is not exactly this gateway's ``Verdict`` schema,
            or a value has the wrong JSON type or is out of range.
    """
    return _parse_document(typed_data, _VERDICT_TYPES, _VERDICT_LAYOUT, VerdictMessage)


def parse_approval_typed_data(typed_data: object) -> tuple[Domain, ApprovalMessage]:
    """Parse an ``Approval`` document strictly (see :func:`parse_verdict_typed_data`).

    Raises:
        TypedDataError: as for :func:`parse_verdict_typed_data`.
    """
    return _parse_document(typed_data, _APPROVAL_TYPES, _APPROVAL_LAYOUT, ApprovalMessage)


def parse_bulk_approval_typed_data(typed_data: object) -> tuple[Domain, BulkApprovalMessage]:
    """Parse a ``BulkApproval`` document strictly (see :func:`parse_verdict_typed_data`).

    ``items`` must be a JSON array of objects with exactly ``actionId`` and ``actionHash``.

    Raises:
        TypedDataError: as for :func:`parse_verdict_typed_data`; also no items, more than
            :data:`MAX_BULK_APPROVAL_ITEMS`, or an action id listed twice.
    """
    return _parse_document(typed_data, _BULK_APPROVAL_TYPES, _BULK_APPROVAL_LAYOUT, BulkApprovalMessage)


def _parse_document(
    typed_data: object, types: dict[str, list[dict[str, str]]], layout: _Layout, struct: Any
) -> Any:
    primary_type = next(iter(types))
    if not isinstance(typed_data, dict) or set(typed_data) != _DOCUMENT_KEYS:
        raise TypedDataError("typed data must be a dict with exactly types, primaryType, domain, message")
    if typed_data["primaryType"] != primary_type:
        raise TypedDataError(f"primaryType is {typed_data['primaryType']!r}, expected {primary_type!r}")
    if typed_data["types"] != {"EIP712Domain": _DOMAIN_MEMBERS, **types}:
        raise TypedDataError(f"types are not exactly {DOMAIN_TYPE} and {', '.join(types)}")
    domain = typed_data["domain"]
    if not isinstance(domain, dict) or set(domain) != {member["name"] for member in _DOMAIN_MEMBERS}:
        raise TypedDataError("domain must hold exactly name, version, chainId, verifyingContract")
    if (domain["name"], domain["version"]) != (DOMAIN_NAME, DOMAIN_VERSION):
        raise TypedDataError(f"domain is {domain['name']!r} version {domain['version']!r}, expected ours")
    parsed_domain = Domain(chain_id=domain["chainId"], verifying_contract=domain["verifyingContract"])
    return parsed_domain, _parse_message(typed_data["message"], primary_type, layout, struct)


def _parse_message(message: object, type_name: str, layout: _Layout, struct: Any) -> Any:
    if not isinstance(message, dict) or set(message) != {json_name for json_name, _, _ in layout}:
        raise TypedDataError(f"message fields are not exactly those of {type_name}")
    values = {}
    for json_name, name, solidity_type in layout:
        value = message[json_name]
        if solidity_type == "bytes32":
            if type(value) is not str or not _BYTES32_PATTERN.fullmatch(value):
                raise TypedDataError(f"{json_name} must be 0x followed by 64 hex digits, got {value!r}")
            value = bytes.fromhex(value[2:])
        elif solidity_type.endswith("[]"):
            if type(value) is not list:
                raise TypedDataError(f"{json_name} must be a JSON array, got {value!r}")
            item_struct, item_layout = _ARRAY_ITEMS[solidity_type]
            item_type = solidity_type[:-2]
            value = tuple(_parse_message(item, item_type, item_layout, item_struct) for item in value)
        values[name] = value
    return struct(**values)
