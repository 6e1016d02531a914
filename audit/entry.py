"""Audit log entries: the v1 format and its leaf hash.

An entry is the RFC 8785 canonical JSON of
``{"v": 1, "seq", "tenant", "type", "time", "action_id", "actor", "data", "prev"}``.
The bytes produced here are the bytes stored; verification reads those bytes and
never re-encodes them (DESIGN invariant 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.errors import EntryFormatError
from audit.rfc6962 import hash_leaf
from crypto.canonical import canonicalize, canonicalize_member, decode_canonical
from crypto.errors import CanonicalizationError

ENTRY_VERSION = 1
GENESIS_PREV = "0" * 64
_FIELDS = frozenset({"v", "seq", "tenant", "type", "time", "action_id", "actor", "data", "prev"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry. `raw` holds the exact stored bytes."""

    seq: int
    tenant: str
    type: str
    time: str
    action_id: str | None
    actor: str
    data: dict[str, Any]
    prev: str
    raw: bytes

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.raw)


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 §2.1 leaf hash: SHA-256(0x00 ‖ entry); the chain's `prev` and the Merkle leaf."""
    return hash_leaf(entry)


@dataclass(frozen=True, slots=True)
class Unplaced:
    """An entry's canonical bytes but for its place in the chain (`seq`, `prev`), which sit
    between the others in key order: a batch chained again on another head only splices
    (`place`), it does not encode its entries' data again."""

    before: bytes  # {"action_id":…,"actor":…,"data":…,"prev":
    after: bytes  # ,"tenant":…,"time":…,"type":…,"v":1}

    def place(self, seq: int, prev: str) -> bytes:
        """The canonical bytes of the entry at `seq` after `prev`: RFC 8785 orders an object's
        members by key and writes each value canonically, which is what the splice does."""
        return b"".join(
            (self.before, canonicalize_member(prev), b',"seq":', canonicalize_member(seq), self.after)
        )


def unplaced_entry(
    *, tenant: str, type: str, time: str, action_id: str | None, actor: str, data: dict[str, Any]
) -> Unplaced:
    """Raises `crypto.errors.CanonicalizationError` if `data` holds a value JSON cannot carry exactly."""
    before = b"".join(
        (b'{"action_id":', canonicalize_member(action_id), b',"actor":', canonicalize_member(actor),
         b',"data":', canonicalize(data), b',"prev":')
    )  # fmt: skip
    after = b"".join(
        (b',"tenant":', canonicalize_member(tenant), b',"time":', canonicalize_member(time),
         b',"type":', canonicalize_member(type), b',"v":', canonicalize_member(ENTRY_VERSION), b"}")
    )  # fmt: skip
    return Unplaced(before, after)


def encode_entry(
    *,
    seq: int,
    tenant: str,
    type: str,
    time: str,
    action_id: str | None,
    actor: str,
    data: dict[str, Any],
    prev: str,
) -> bytes:
    """Return the canonical bytes of one entry: the RFC 8785 form of
    ``{"v": 1, "seq", "tenant", "type", "time", "action_id", "actor", "data", "prev"}``.

    Raises `crypto.errors.CanonicalizationError` if `data` holds a value JSON cannot carry exactly.
    """
    unplaced = unplaced_entry(
        tenant=tenant, type=type, time=time, action_id=action_id, actor=actor, data=data
    )
    return unplaced.place(seq, prev)


def parse_entry(raw: bytes) -> Entry:
    """Decode stored entry bytes.

    Raises `EntryFormatError` for bytes that are not a v1 entry, including bytes that are
    valid JSON but not in canonical form (an entry is only ever its canonical encoding).
    """
    try:
        obj = decode_canonical(raw)
    except CanonicalizationError:
        raise EntryFormatError("entry bytes are not RFC 8785 canonical") from None
    except (ValueError, TypeError) as exc:
        raise EntryFormatError(f"entry is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        raise EntryFormatError("entry does not have exactly the v1 fields")
    if obj["v"] != ENTRY_VERSION:
        raise EntryFormatError(f"unsupported entry version {obj['v']!r}")
    checks = (
        isinstance(obj["seq"], int) and not isinstance(obj["seq"], bool) and obj["seq"] >= 0,
        isinstance(obj["tenant"], str),
        isinstance(obj["type"], str),
        isinstance(obj["time"], str),
        obj["action_id"] is None or isinstance(obj["action_id"], str),
        isinstance(obj["actor"], str),
        isinstance(obj["data"], dict),
        isinstance(obj["prev"], str) and len(obj["prev"]) == 64,
    )
    if not all(checks):
        raise EntryFormatError("entry has a field of the wrong type")
    return Entry(
        seq=obj["seq"],
        tenant=obj["tenant"],
        type=obj["type"],
        time=obj["time"],
        action_id=obj["action_id"],
        actor=obj["actor"],
        data=obj["data"],
        prev=obj["prev"],
        raw=raw,
    )
