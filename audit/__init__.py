"""Verdict's audit log: entry format, hash chain, RFC 6962 Merkle tree and proofs (and, later, checkpoints)."""

from audit.chain import verify_chain
from audit.entry import ENTRY_VERSION, GENESIS_PREV, Entry, encode_entry, leaf_hash, parse_entry
from audit.errors import (
    AuditError,
    ChainError,
    ConsistencyProofError,
    EntryFormatError,
    InclusionProofError,
    MerkleTreeError,
    ProofError,
)
from audit.proof import (
    consistency_proof,
    inclusion_proof,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from audit.rfc6962 import EMPTY_ROOT, HASH_SIZE, hash_children, hash_leaf, root_hash

__all__ = [
    "EMPTY_ROOT",
    "ENTRY_VERSION",
    "GENESIS_PREV",
    "HASH_SIZE",
    "AuditError",
    "ChainError",
    "ConsistencyProofError",
    "Entry",
    "EntryFormatError",
    "InclusionProofError",
    "MerkleTreeError",
    "ProofError",
    "consistency_proof",
    "encode_entry",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "leaf_hash",
    "parse_entry",
    "root_from_inclusion_proof",
    "root_hash",
    "verify_chain",
    "verify_consistency",
    "verify_inclusion",
]
