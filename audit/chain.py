"""The per-tenant hash chain: each entry's `prev` is the leaf hash of the entry before it."""

from __future__ import annotations

from collections.abc import Iterable

from audit.entry import GENESIS_PREV, Entry, leaf_hash, parse_entry
from audit.errors import ChainError


def verify_chain(
    raw_entries: Iterable[bytes],
    *,
    tenant: str,
    start_seq: int = 0,
    start_prev: str = GENESIS_PREV,
) -> list[Entry]:
    """Parse entries and check that they form one unbroken chain.

    (1) each entry parses as v1, (2) it belongs to `tenant`, (3) `seq` counts up from
    `start_seq` without gaps, (4) `prev` equals the leaf hash of the entry before
    (`start_prev` for the first). Returns the parsed entries.

    Raises `ChainError` naming the first entry that breaks a rule, and
    `EntryFormatError` for malformed bytes.
    """
    entries: list[Entry] = []
    expected_seq, expected_prev = start_seq, start_prev
    for raw in raw_entries:
        entry = parse_entry(raw)  # (1)
        if entry.tenant != tenant:  # (2)
            raise ChainError("entry of another tenant", seq=entry.seq, expected=tenant, found=entry.tenant)
        if entry.seq != expected_seq:  # (3)
            raise ChainError("gap in seq", seq=expected_seq, expected=expected_seq, found=entry.seq)
        if entry.prev != expected_prev:  # (4)
            raise ChainError("prev does not match", seq=entry.seq, expected=expected_prev, found=entry.prev)
        entries.append(entry)
        expected_seq, expected_prev = entry.seq + 1, leaf_hash(raw).hex()
    return entries
