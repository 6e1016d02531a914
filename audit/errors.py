"""Errors of the audit package: one root, one subclass per kind of failure."""

from __future__ import annotations


class AuditError(Exception):
    """Root of every error raised by `audit`."""


class EntryFormatError(AuditError):
    """Entry bytes that are not a well-formed `v: 1` log entry."""


class ChainError(AuditError):
    """Entries that do not link: a gap in `seq`, a wrong `prev`, another tenant.

    Carries the evidence: the position, what was expected and what was found.
    """

    def __init__(self, message: str, *, seq: int, expected: object, found: object) -> None:
        super().__init__(f"{message} at seq {seq}: expected {expected!r}, found {found!r}")
        self.seq = seq
        self.expected = expected
        self.found = found


class MerkleTreeError(AuditError):
    """Arguments that name no Merkle tree, subtree or proof: a hash that is not 32 bytes, a size
    larger than the leaves given, a leaf index outside the tree, an old size above the new one.

    Raised when building roots and proofs; verifiers raise `ProofError` subclasses instead.
    """


class ProofError(AuditError):
    """A Merkle proof that does not verify, or inputs no proof could verify (a proof of the wrong
    length, an index outside the tree, sizes out of order, hashes that are not 32 bytes).

    When a root was calculated, carries the evidence: `tree_size`, the `expected` root (the one the
    caller trusts) and the `calculated` root (the one the proof leads to). All three are None when
    the inputs were rejected before any root could be calculated.
    """

    def __init__(
        self,
        message: str,
        *,
        tree_size: int | None = None,
        expected: bytes | None = None,
        calculated: bytes | None = None,
    ) -> None:
        if expected is not None and calculated is not None:
            message = (
                f"{message}: root of tree size {tree_size}: expected {expected.hex()}, "
                f"calculated {calculated.hex()}"
            )
        super().__init__(message)
        self.tree_size = tree_size
        self.expected = expected
        self.calculated = calculated


class InclusionProofError(ProofError):
    """An RFC 9162 §2.1.3 inclusion proof that does not prove the leaf is in the tree."""


class ConsistencyProofError(ProofError):
    """An RFC 9162 §2.1.4 consistency proof that does not prove the new tree extends the old one."""
