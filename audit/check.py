"""Re-verifying a whole log from its entries and checkpoints (`verdict audit check`).

`LogChecker` takes every entry in order, once, and checks: (1) each is a canonical v1 entry of the
tenant with `seq` counting from 0 and `prev` linking to the one before; (2) every checkpoint is
signed by the log's key for this log; (3) the root of the first `size` entries, recomputed here, is
the root each checkpoint signed; (4) no checkpoint is larger than the log (a truncated tail would
show here). The caller may compare the subtree hashes it stored with the recomputed ones that
`add` returns.

Memory stays O(log n): only the frontier of the tree is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from audit.checkpoint import Checkpoint, verify_checkpoint
from audit.entry import GENESIS_PREV, parse_entry
from audit.errors import AuditError, ChainError, LogCheckError
from audit.note import NoteVerifier
from audit.rfc6962 import EMPTY_ROOT, hash_leaf
from audit.tree import integrate

__all__ = ["LogCheckReport", "LogChecker"]


@dataclass(frozen=True, slots=True)
class LogCheckReport:
    size: int
    root: bytes
    checkpoints: int  # how many checkpoints were verified
    types: dict[str, int]  # entries per type


class LogChecker:
    def __init__(
        self, tenant: str, checkpoints: Iterable[str], verifiers: NoteVerifier | Sequence[NoteVerifier]
    ) -> None:
        """`verifiers`: the log's keys, current and retired (a checkpoint needs one of them).

        Raises the `NoteError`/`CheckpointError` of the first checkpoint that does not verify, and
        `LogCheckError` for two checkpoints of one size with different roots."""
        self.tenant = tenant
        self._roots: dict[int, bytes] = {}
        keys = [verifiers] if isinstance(verifiers, NoteVerifier) else list(verifiers)
        for note in checkpoints:
            checkpoint = _verify_with_any(note, keys)  # (2)
            known = self._roots.setdefault(checkpoint.size, checkpoint.root_hash)
            if known != checkpoint.root_hash:
                raise LogCheckError(f"two checkpoints of size {checkpoint.size} sign different roots")
        self._pending = sorted(self._roots)
        self.size = 0
        self._prev = GENESIS_PREV
        self._frontier: list[bytes] = []
        self._root = EMPTY_ROOT
        self._verified = 0
        if self._pending and self._pending[0] == 0:
            if self._roots[0] != EMPTY_ROOT:
                raise LogCheckError("the checkpoint of size 0 does not sign the empty tree's root")
            self._pending.pop(0)
            self._verified += 1
        self._types: dict[str, int] = {}

    def add(self, raws: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Check the next entries; return the subtree hashes they complete, as `audit.tree.integrate`.

        Raises `EntryFormatError` or `ChainError` for an entry that breaks (1), `LogCheckError`
        when a checkpoint's root is not the recomputed one (3).
        """
        hashes: list[tuple[int, int, bytes]] = []
        leaves: list[bytes] = []
        for raw in raws:
            entry = parse_entry(raw)  # (1)
            seq = self.size + len(leaves)
            if entry.tenant != self.tenant:
                raise ChainError("entry of another tenant", seq=seq, expected=self.tenant, found=entry.tenant)
            if entry.seq != seq:
                raise ChainError("gap in seq", seq=seq, expected=seq, found=entry.seq)
            if entry.prev != self._prev:
                raise ChainError("prev does not match", seq=seq, expected=self._prev, found=entry.prev)
            self._types[entry.type] = self._types.get(entry.type, 0) + 1
            leaf = hash_leaf(raw)
            self._prev = leaf.hex()
            leaves.append(leaf)
            if self._pending and self._pending[0] == seq + 1:  # a checkpoint's size: compare roots (3)
                hashes.extend(self._integrate(leaves))
                leaves = []
        hashes.extend(self._integrate(leaves))
        return hashes

    @property
    def last_leaf_hex(self) -> str:
        """The hex leaf hash of the last entry added (the chain head), or the genesis value."""
        return self._prev

    def finish(self) -> LogCheckReport:
        """Raises `LogCheckError` if a checkpoint is larger than the log (4)."""
        if self._pending:
            raise LogCheckError(
                f"a checkpoint signs size {self._pending[0]} but the log holds {self.size} entries:"
                " entries were dropped"
            )
        return LogCheckReport(self.size, self._root, self._verified, dict(self._types))

    def _integrate(self, leaves: list[bytes]) -> list[tuple[int, int, bytes]]:
        if not leaves:
            return []
        result = integrate(self.size, self._frontier, leaves)
        self.size, self._frontier, self._root = result.size, result.frontier, result.root
        if self._pending and self._pending[0] == self.size:
            self._pending.pop(0)
            if self._roots[self.size] != self._root:
                raise LogCheckError(
                    f"the checkpoint of size {self.size} signs root {self._roots[self.size].hex()},"
                    f" the entries hash to {self._root.hex()}"
                )
            self._verified += 1
        return result.hashes


def _verify_with_any(note: str, verifiers: list[NoteVerifier]) -> Checkpoint:
    """The checkpoint, verified by the first of `verifiers` that signed it; the last error if none."""
    error: AuditError = LogCheckError("no log key to verify checkpoints with")
    for verifier in verifiers:
        try:
            return verify_checkpoint(note, verifier)
        except AuditError as failure:
            error = failure
    raise error
