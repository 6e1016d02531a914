"""Errors of the audit package: one root, one subclass per kind of failure."""

from __future__ import annotations


class AuditError(Exception):
    """Root of every error raised by `audit`."""


class EntryFormatError(AuditError):
    """Entry bytes that are not a well-formed `v: 1` log entry. `seq` is the entry's position in
    its log when the caller knows it (a whole-log check), else None."""

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message if seq is None else f"entry {seq}: {message}")
        self.seq = seq


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


class NoteError(AuditError):
    """A signed note (c2sp.org/signed-note) that does not open, or a key that cannot sign or verify one.

    Carries the evidence: what was `expected` and what was `found`; both None when there is none to show.
    """

    def __init__(self, message: str, *, expected: object = None, found: object = None) -> None:
        if expected is not None:
            message = f"{message}: expected {expected}, found {found!r}"
        super().__init__(message)
        self.expected = expected
        self.found = found


class MalformedNoteError(NoteError):
    """Text that is not a signed note: not UTF-8, a control character, no blank line before the
    signatures, a signature line that is not `— <key name> <base64>`, too many signature lines; or a
    text to sign that does not end in a newline."""


class NoteKeyError(NoteError):
    """A key string, key name or key that cannot be used: malformed, a key hash that does not match the
    name and key, a signature type other than Ed25519, or two different keys under one name and key hash."""


class UnverifiedNoteError(NoteError):
    """A well-formed note with no signature by a known key (c2sp.org/signed-note §Signatures: "If no
    signature from a known key verifies successfully, clients MUST reject the note").

    `expected` holds the `<name>+<hash>` of the known keys, `found` those of the note's signature lines.
    The text is deliberately not attached: it must be ignored unless a trusted signature verifies.
    """

    def __init__(self, *, known: tuple[str, ...], signed_by: tuple[str, ...]) -> None:
        super().__init__(
            f"note has no signature by a known key: expected a signature by one of {list(known)}, "
            f"found signatures by {list(signed_by)}"
        )
        self.expected = known
        self.found = signed_by


class InvalidSignatureError(NoteError):
    """A signature line naming a known key (its name and key hash) whose signature does not verify over
    the note text (c2sp.org/signed-note §Signatures: "clients SHOULD reject the whole note").

    `expected` is the key (`<name>+<hash>`), `found` the signature bytes that failed (without the key hash).
    """

    def __init__(self, *, key: str, signature: bytes) -> None:
        super().__init__(
            f"signature line of known key {key} does not verify: expected an Ed25519 signature of the "
            f"note text by {key}, found {len(signature)} bytes {signature.hex()}"
        )
        self.expected = key
        self.found = signature


class CheckpointError(AuditError):
    """A checkpoint (c2sp.org/tlog-checkpoint) that is not well formed or not the one expected.

    Carries the evidence: what was `expected` and what was `found`; both None when there is none to show.
    Errors of the signed note around a checkpoint are `NoteError`s.
    """

    def __init__(self, message: str, *, expected: object = None, found: object = None) -> None:
        if expected is not None:
            message = f"{message}: expected {expected}, found {found!r}"
        super().__init__(message)
        self.expected = expected
        self.found = found


class MalformedCheckpointError(CheckpointError):
    """A checkpoint body, or `Checkpoint` fields, that break c2sp.org/tlog-checkpoint §Note text: an
    empty origin, a tree size that is not canonical decimal, a root hash that is not 32 bytes of
    canonical base64, an empty extension line, a missing final newline."""


class CheckpointOriginError(CheckpointError):
    """A checkpoint from another log: its origin is not the key name, or not the origin the caller
    expected. `expected` and `found` are the two origins."""


class TileError(AuditError):
    """A tile path that is not one of c2sp.org/tlog-tiles, or tile or entry-bundle bytes that do not
    have the shape the spec gives them."""


class CosignatureError(AuditError):
    """A cosigner key that is not one of c2sp.org/tlog-cosignature (Ed25519, type 0x04), or a
    cosignature by a known cosigner that does not verify."""


class WitnessPolicyError(AuditError):
    """A witness policy file that is not one of c2sp.org/tlog-policy, or a checkpoint that does not
    meet a policy: carries the cosigners `found` and what the quorum `expected`."""

    def __init__(self, message: str, *, expected: object = None, found: object = None) -> None:
        if expected is not None or found is not None:
            message = f"{message}: expected {expected}, found {found!r}"
        super().__init__(message)
        self.expected = expected
        self.found = found


class BundleError(AuditError):
    """A proof bundle that does not verify. Names the failed `step` (`format`, `checkpoint`,
    `inclusion`, `chain`, `meaning`) and, for a step about one entry, its log `index`."""

    def __init__(self, step: str, message: str, *, index: int | None = None) -> None:
        where = f"entry {index}: " if index is not None else ""
        super().__init__(f"{step}: {where}{message}")
        self.step = step
        self.index = index
        self.reason = message


class LogCheckError(AuditError):
    """A whole-log check found the log and its checkpoints or stored hashes disagreeing. `seq`
    names the first entry found changed or missing, when the failure is about one entry."""

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq
