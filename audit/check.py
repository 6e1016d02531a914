"""Re-verifying a whole log from its entries and checkpoints (`verdict audit check`, and the
gateway's own scan at start-up).

`LogChecker` takes every entry in order, once, and checks: (1) each is a canonical v1 entry (the
exact RFC 8785 bytes: re-encoded, they are the same bytes) of the tenant, in its place (`seq` =
its position); (2) when the caller stored a leaf hash for it (its tree's level 0), the entry's
bytes still hash to it; (3) `prev` links to the entry before; (4) every checkpoint is signed by
the log's key for this log; (5) the root of the first `size` entries, recomputed here, is the root
each checkpoint signed; (6) no checkpoint is larger than the log (a truncated tail shows here).
The caller may compare the subtree hashes it stored with the recomputed ones that `add` returns.

A failure names the first entry that no longer matches, not its successor: an entry whose bytes
changed fails (2) at its own position when a leaf hash is stored for it; in a tail without stored
hashes, the `prev` the next entry recorded is the evidence, so a broken link names the entry
before it (unless that one matched its stored leaf, which leaves the later one's `prev` as the
changed bytes). A checkpoint's root is compared only after the link from its last entry to the
next one was checked, for the same reason.

Memory stays O(log n): only the frontier of the tree is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from audit.checkpoint import verify_checkpoint_with_any
from audit.entry import GENESIS_PREV, Entry, parse_entry
from audit.errors import ChainError, EntryFormatError, LogCheckError
from audit.note import NoteVerifier
from audit.rfc6962 import EMPTY_ROOT, hash_leaf
from audit.tree import integrate
from crypto.canonical import canonicalize
from crypto.errors import CanonicalizationError

__all__ = ["LogCheckReport", "LogChecker", "parse_entry_at"]


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
            checkpoint = verify_checkpoint_with_any(note, keys)  # (4)
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
        self._prev_matched_stored = False

    def add(
        self, raws: Sequence[bytes], stored_leaves: Sequence[bytes | None] | None = None
    ) -> list[tuple[int, int, bytes]]:
        """Check the next entries; return the subtree hashes they complete, as `audit.tree.integrate`.

        `stored_leaves[i]`, when given and not None, is the leaf hash the caller stored for
        `raws[i]` (2).

        Raises `EntryFormatError` (with `seq`) for an entry that is not a canonical v1 entry (1),
        `ChainError` for one out of place, of another tenant or not linking (1, 3), `LogCheckError`
        (with `seq`) for one that no longer hashes to its stored leaf (2), and `LogCheckError` when
        a checkpoint's root is not the recomputed one (5).
        """
        hashes: list[tuple[int, int, bytes]] = []
        leaves: list[bytes] = []
        for offset, raw in enumerate(raws):
            seq = self.size + len(leaves)
            stored = stored_leaves[offset] if stored_leaves is not None else None
            leaf = self._check_entry(seq, raw, stored)
            if self._pending and self._pending[0] == seq:  # a checkpoint's size: compare roots (5)
                hashes.extend(self._integrate(leaves))
                leaves = []
                self._compare_root()
            leaves.append(leaf)
        hashes.extend(self._integrate(leaves))
        return hashes

    def _check_entry(self, seq: int, raw: bytes, stored: bytes | None) -> bytes:
        """Steps (1) to (3) for the entry at position `seq`; returns its leaf hash."""
        entry = parse_entry_at(seq, raw)  # (1)
        if entry.tenant != self.tenant:
            raise ChainError("entry of another tenant", seq=seq, expected=self.tenant, found=entry.tenant)
        if entry.seq != seq:
            # deleted or reordered: the first place without its entry; inserted: where the
            # displaced entry belongs, which an inserted one took
            raise ChainError(
                "entry out of place (entries deleted, inserted or reordered)",
                seq=min(seq, entry.seq),
                expected=seq,
                found=entry.seq,
            )
        leaf = hash_leaf(raw)
        if stored is not None and stored != leaf:  # (2)
            raise LogCheckError(
                f"entry {seq} was changed: its bytes hash to {leaf.hex()}, the tree stored {stored.hex()}",
                seq=seq,
            )
        if entry.prev != self._prev:  # (3)
            if seq == 0:
                raise ChainError(
                    "the first entry does not link to the genesis value",
                    seq=0,
                    expected=GENESIS_PREV,
                    found=entry.prev,
                )
            # `entry.prev` is the leaf hash of entry seq - 1 as it was written: unless that entry
            # matched its stored leaf, it is the one whose bytes changed.
            named = seq if self._prev_matched_stored else seq - 1
            raise ChainError(
                f"entry {named} was changed: entry {seq - 1} does not hash to the prev entry {seq}"
                " recorded" + ("" if self._prev_matched_stored else f" (or entry {seq}'s prev was changed)"),
                seq=named,
                expected=entry.prev,
                found=self._prev,
            )
        self._types[entry.type] = self._types.get(entry.type, 0) + 1
        self._prev = leaf.hex()
        self._prev_matched_stored = stored is not None
        return leaf

    @property
    def last_leaf_hex(self) -> str:
        """The hex leaf hash of the last entry added (the chain head), or the genesis value."""
        return self._prev

    def finish(self) -> LogCheckReport:
        """Raises `LogCheckError` if the last checkpoint's root is not the recomputed one (5), or a
        checkpoint is larger than the log (6)."""
        self._compare_root()
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
        return result.hashes

    def _compare_root(self) -> None:
        """(5) for a checkpoint of the size integrated so far, if there is one."""
        if self._pending and self._pending[0] == self.size:
            self._pending.pop(0)
            if self._roots[self.size] != self._root:
                raise LogCheckError(
                    f"the checkpoint of size {self.size} signs root {self._roots[self.size].hex()},"
                    f" the entries hash to {self._root.hex()}"
                )
            self._verified += 1


def parse_entry_at(seq: int, raw: bytes) -> Entry:
    """`parse_entry`, with the position in the error. For bytes that are JSON but not in canonical
    form, says where they first differ from their canonical form.

    Raises `EntryFormatError` with `seq`."""
    try:
        return parse_entry(raw)
    except EntryFormatError as error:
        raise EntryFormatError(f"{error}{_canonical_difference(raw)}", seq=seq) from None


def _canonical_difference(raw: bytes) -> str:
    try:
        canonical = canonicalize(msgspec.json.decode(raw))
    except (msgspec.DecodeError, CanonicalizationError, ValueError, TypeError, RecursionError):
        return ""
    if canonical == raw:
        return ""
    at = next((i for i, (a, b) in enumerate(zip(raw, canonical, strict=False)) if a != b), None)
    at = min(len(raw), len(canonical)) if at is None else at
    return f" (they differ from their canonical form from byte {at} on)"
