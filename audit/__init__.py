"""Verdict's audit log: entry format, hash chain (and, later, Merkle proofs and checkpoints)."""

from audit.chain import verify_chain
from audit.entry import ENTRY_VERSION, GENESIS_PREV, Entry, encode_entry, leaf_hash, parse_entry
from audit.errors import AuditError, ChainError, EntryFormatError

__all__ = [
    "ENTRY_VERSION",
    "GENESIS_PREV",
    "AuditError",
    "ChainError",
    "Entry",
    "EntryFormatError",
    "encode_entry",
    "leaf_hash",
    "parse_entry",
    "verify_chain",
]
