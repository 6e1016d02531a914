"""The gateway's own watch over its stored logs: which tenants' logs failed an integrity check, and
the cheap check the integrator runs before it signs a checkpoint.

A tenant's log is broken when its stored entries no longer hash to the tree its checkpoints signed
(an entry edited, deleted, inserted or moved in the database), or the tree no longer folds to the
signed root. From the first failure on, the gateway signs no checkpoint for that tenant, answers
its log routes with 500 `log_integrity_error` (our own data is wrong: retrying does not help),
reports the failure on `/health`, and logs it once. Other tenants are not affected. The state
lives in the process: a restart forgets it and re-detects it (the start-up scan,
`AuditService.verify_logs`), so a repaired log is served again after a restart.

Before signing, the integrator checks (`verify_signed_head`, `verify_sample`), on top of the new
entries themselves:

1. the tree head it extends is the tree the last checkpoint signed (the signed note verifies under
   the log's keys and signs that size and root);
2. a random sample of earlier entries: each is a canonical v1 entry in its place, hashes to the
   leaf the tree stored for it, links to the stored leaf before it, and is included (RFC 9162
   inclusion proof from the stored hashes) in the signed root.

The whole log is checked at start-up, in the background (`verify_logs`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from audit.check import parse_entry_at
from audit.checkpoint import verify_checkpoint
from audit.entry import GENESIS_PREV
from audit.errors import AuditError, UnverifiedNoteError
from audit.note import NoteVerifier
from audit.proof import verify_inclusion
from audit.rfc6962 import hash_leaf
from audit.tree import Key, inclusion_keys, inclusion_proof_from
from gateway.clock import rfc3339, utc_now
from gateway.errors import AppError, Unavailable

log = logging.getLogger("verdict.audit")

SAMPLE_SIZE = 16  # earlier entries re-checked before each checkpoint is signed


class LogIntegrityError(AppError):
    """The stored log does not check out; the gateway refuses to sign a checkpoint over it."""

    status, code, title = 500, "log_integrity_error", "The audit log failed an integrity check"


class LogKeyUnknown(Unavailable):
    """The last checkpoint is signed by a log key this process does not know (yet): another process
    rotated the key and this one reloads within a second. Not a sign of tampering: retried."""

    code = "log_key_unknown"


@dataclass(frozen=True, slots=True)
class IntegrityProblem:
    tenant: str
    seq: int | None  # the first entry found changed or missing, when the failure names one
    detail: str
    detected_at: str


class LogIntegrity:
    """Which tenants' logs failed a check, in this process. Not locked: the event loop's one
    thread reads and writes it."""

    def __init__(self) -> None:
        self.problems: dict[str, IntegrityProblem] = {}

    def record(self, tenant: str, detail: str, seq: int | None = None) -> LogIntegrityError:
        """Mark the tenant's log broken (the first failure is kept and logged, once) and return the
        error to raise."""
        problem = self.problems.get(tenant)
        if problem is None:
            problem = self.problems[tenant] = IntegrityProblem(tenant, seq, detail, rfc3339(utc_now()))
            log.error(
                "audit log of tenant %s failed an integrity check%s: %s; no checkpoint is signed for it"
                " and its log routes answer 500 until it is repaired and the gateway restarted",
                tenant,
                "" if seq is None else f" at entry {seq}",
                detail,
            )
        return self.error(problem)

    def require_intact(self, tenant: str) -> None:
        """Raises `LogIntegrityError` if the tenant's log failed a check."""
        problem = self.problems.get(tenant)
        if problem is not None:
            raise self.error(problem)

    @staticmethod
    def error(problem: IntegrityProblem) -> LogIntegrityError:
        extra = {} if problem.seq is None else {"seq": problem.seq}
        return LogIntegrityError(f"the audit log failed an integrity check: {problem.detail}", **extra)


def pick_sample(size: int, rng: random.Random, count: int) -> list[int]:
    """Up to `count` distinct positions in [0, size), sorted."""
    return sorted(rng.sample(range(size), min(count, size)))


def sample_keys(positions: Sequence[int], size: int) -> set[Key]:
    """The stored hashes `verify_sample` reads for `positions` of a tree of `size`."""
    keys: set[Key] = set()
    for index in positions:
        keys |= inclusion_keys(index, size)
        keys.add((0, index))
        if index:
            keys.add((0, index - 1))
    return keys


def verify_signed_head(
    integrity: LogIntegrity,
    tenant: str,
    size: int,
    root: bytes,
    note: str | None,
    verifiers: Sequence[NoteVerifier],
) -> None:
    """(1) The tree head (`size`, `root`) is the tree the checkpoint `note` of that size signed.

    Raises `LogKeyUnknown` (retryable, not recorded) when the note is signed by none of the keys
    `verifiers` know, `LogIntegrityError` (and records it) otherwise."""
    if size == 0:
        return
    if note is None:
        raise integrity.record(tenant, f"no checkpoint signs the tree head of size {size}")
    failure = "no log key to verify it with"
    unknown = bool(verifiers)
    for verifier in verifiers:
        try:
            checkpoint = verify_checkpoint(note, verifier)
            break
        except AuditError as error:
            failure = str(error)
            unknown = unknown and isinstance(error, UnverifiedNoteError)
    else:
        if unknown:  # a key rotated by another process, not yet reloaded here: sign nothing, retry
            log.warning(
                "the checkpoint of size %d of tenant %s is signed by a log key not known here", size, tenant
            )
            raise LogKeyUnknown(
                f"the checkpoint of size {size} is signed by a log key this gateway does not know yet"
            )
        raise integrity.record(tenant, f"the checkpoint of size {size} does not verify: {failure}")
    if checkpoint.size != size or checkpoint.root_hash != root:
        raise integrity.record(
            tenant,
            f"the tree head (size {size}, root {root.hex()}) is not the tree the checkpoint of that"
            f" size signed (size {checkpoint.size}, root {checkpoint.root_hash.hex()})",
        )


def verify_sample(
    integrity: LogIntegrity,
    tenant: str,
    size: int,
    root: bytes,
    entries: Mapping[int, bytes],
    stored: Mapping[Key, bytes],
    positions: Sequence[int],
) -> None:
    """(2) Each entry at `positions` (read into `entries`) still is what the tree of `size` and
    signed `root` holds. `stored` holds `sample_keys(positions, size)`.

    Raises `LogIntegrityError` (and records it) naming the first entry that is not."""
    for index in positions:
        raw = entries.get(index)
        if raw is None:
            raise integrity.record(tenant, f"entry {index} is missing", index)
        try:
            entry = parse_entry_at(index, raw)
        except AuditError as error:
            raise integrity.record(tenant, str(error), index) from None
        if entry.seq != index or entry.tenant != tenant:
            raise integrity.record(
                tenant, f"entry {index} is out of place: it says seq {entry.seq} of {entry.tenant!r}", index
            )
        leaf = hash_leaf(raw)
        if (0, index) not in stored or (index and (0, index - 1) not in stored):
            raise integrity.record(tenant, f"the stored leaf hashes around entry {index} are missing", index)
        if stored[(0, index)] != leaf:
            raise integrity.record(
                tenant, f"entry {index} was changed: its bytes no longer hash to the stored leaf", index
            )
        before = stored[(0, index - 1)].hex() if index else GENESIS_PREV
        if entry.prev != before:
            raise integrity.record(tenant, f"entry {index} does not link to entry {index - 1}", index)
        try:
            verify_inclusion(index, size, leaf, inclusion_proof_from(index, size, stored), root)
        except AuditError as error:
            raise integrity.record(
                tenant, f"the stored tree around entry {index} is not the signed one: {error}", index
            ) from None
