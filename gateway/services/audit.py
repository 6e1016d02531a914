"""The verifiable log: integrating entries into each tenant's Merkle tree, signing checkpoints,
serving proofs and proof bundles.

Appends (gateway.ledger) only sequence entries into the hash chain. Integration runs after them,
off the request path: a background task every few seconds, and on request (a proof bundle needs a
checkpoint that covers its entries). One integration step, for one tenant:

1. read, outside any transaction, the tree head (size m, root), the chain's size n, entries [m, n)
   and the stored hashes the step needs (entries and stored hashes never change once written);
2. check that the stored frontier folds to the tree head's root and that the last checkpoint signed
   that head, that a random sample of earlier entries still is what the tree holds
   (`gateway.services.log_integrity`), the new entries (canonical v1 entries, seq without gaps,
   `prev` links, tenant); compute the new subtree hashes and root, and check that the new tree is
   consistent with the last checkpoint (an RFC 9162 consistency proof, built from the stored hashes
   and verified) — only then sign the checkpoint;
3. in a short transaction, lock the tree head row; if another process integrated meanwhile, drop
   the work; otherwise store the hashes, the checkpoint and the new head.

A size has at most one checkpoint (primary key), so the log never signs two roots for one size.
Anything wrong in step 2 marks the tenant's log broken (`LogIntegrity`): no checkpoint is signed for
it any more, its log routes answer 500 `log_integrity_error`, and it is logged once. At start-up,
`verify_logs` re-checks every tenant's whole log in the background, as `verdict audit check` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from audit.bundle import make_bundle
from audit.check import LogCheckReport, parse_entry_at
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.entry import GENESIS_PREV
from audit.errors import AuditError
from audit.note import NoteSigner, NoteVerifier, new_signer, parse_vkey, vkey
from audit.proof import verify_consistency
from audit.rfc6962 import EMPTY_ROOT, hash_leaf
from audit.tree import (
    Key,
    consistency_keys,
    consistency_proof_from,
    frontier_keys,
    inclusion_keys,
    inclusion_proof_from,
    integrate,
    root_from,
    within,
)
from gateway.auth import Principal
from gateway.clock import rfc3339, utc_now
from gateway.errors import InvalidRequest, NotFound, Unavailable
from gateway.services.actions import ActionService
from gateway.services.log_integrity import (
    SAMPLE_SIZE,
    IntegrityProblem,
    LogIntegrity,
    LogIntegrityError,
    LogKeyUnknown,
    pick_sample,
    sample_keys,
    verify_sample,
    verify_signed_head,
)
from gateway.services.log_scan import check_log, verify_logs
from gateway.storage import Conn, Database

log = logging.getLogger("verdict.audit")

MAX_INTEGRATION_STEP = 65_536  # entries per checkpoint (one transaction)
SLICE = 128  # entries read and hashed between two awaits (a few ms of event-loop time each)
MAX_BUNDLE_ENTRIES = 1000
_KEYS_PER_QUERY = 400
CHECK_PAGE = 20_000  # entries per read of `check_log` (the command line)
SCAN_PAGE = 2_000  # entries per read of the start-up scan (smaller: the server is serving meanwhile)
SCAN_RETRY_SECONDS = 5.0

__all__ = ["AuditService", "IntegrityProblem", "LogIntegrityError", "StoredCheckpoint"]


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str


class AuditService:
    def __init__(
        self, db: Database, log_key: Any, origin_base: str, retired: list[Any] | None = None
    ) -> None:
        self.db = db
        self._log_key = log_key
        self._retired: list[Any] = list(retired or [])  # public keys of rotated-out log keys
        self.origin_base = origin_base.rstrip("/")
        self._signers: dict[str, NoteSigner] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.integrity = LogIntegrity()
        self._rng = random.Random()
        self.sample_size = SAMPLE_SIZE  # earlier entries re-checked before each checkpoint is signed
        # set when a witness policy is configured: checkpoints are then published under its quorum
        self.witnessing: Any = None

    @property
    def integrity_errors(self) -> dict[str, IntegrityProblem]:
        """Tenants whose log failed an integrity check in this process (for `/health`)."""
        return self.integrity.problems

    def require_intact(self, tenant: str) -> None:
        """Raises `LogIntegrityError` if the tenant's log failed an integrity check."""
        self.integrity.require_intact(tenant)

    # ---- keys

    def origin(self, tenant: str) -> str:
        return f"{self.origin_base}/{tenant}"

    def signer(self, tenant: str) -> NoteSigner:
        signer = self._signers.get(tenant)
        if signer is None:
            signer = self._signers[tenant] = new_signer(self.origin(tenant), self._log_key)
        return signer

    def vkey(self, tenant: str, public_key: Any = None) -> str:
        """The signed-note verifier key of the tenant's log: of the active key, or of `public_key`."""
        return vkey(self.origin(tenant), public_key or self._log_key.public_key())

    def verifiers(self, tenant: str) -> list[NoteVerifier]:
        """The verifiers of the tenant's checkpoints: the active log key's, then retired ones'."""
        keys = [self._log_key.public_key(), *self._retired]
        return [parse_vkey(self.vkey(tenant, key)) for key in keys]

    def set_log_key(self, log_key: Any, retired: list[Any] | None = None) -> None:
        """Sign checkpoints with `log_key` from now on (after a rotation); `retired` are the public
        keys of earlier log keys, which still verify older checkpoints (`check_log`)."""
        self._log_key = log_key
        self._retired = list(retired or [])
        self._signers.clear()

    # ---- checkpoints

    async def latest(self, tenant: str) -> StoredCheckpoint | None:
        """Raises `LogIntegrityError` if the tenant's log failed an integrity check."""
        self.require_intact(tenant)
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT size, root, note FROM audit_checkpoints WHERE tenant_id = ? ORDER BY size DESC LIMIT 1",
                tenant,
            )
        return StoredCheckpoint(int(row["size"]), bytes(row["root"]), row["note"]) if row else None

    async def published_note(self, tenant: str) -> str:
        """The latest published checkpoint note: the latest signed one, or with a witness policy
        the latest one the quorum cosigned (cosignatures appended). Integrates (and asks the
        witnesses) first when the log has none yet.

        Raises NotFound for an unknown tenant, `LogIntegrityError` for a broken log, Unavailable
        (`checkpoint_not_witnessed`) while no checkpoint of the log met the witness quorum."""
        return (await self.published(tenant, 0)).note

    async def published(self, tenant: str, size: int) -> StoredCheckpoint:
        """The latest published checkpoint, integrating (and witnessing) first if it is not of at
        least `size` entries. Raises as `published_note`."""
        self.require_intact(tenant)
        latest = (
            await self.latest(tenant) if self.witnessing is None else await self.witnessing.published(tenant)
        )
        if latest is not None and latest.size >= size:
            return latest
        signed = await self.checkpoint(tenant)
        if self.witnessing is None:
            return signed
        latest = await self.witnessing.witness(tenant)
        if latest is None or latest.size < size:
            raise Unavailable(
                "no checkpoint covering these entries met the witness quorum yet; see /health",
                code="checkpoint_not_witnessed",
            )
        return latest

    async def at_size(self, tenant: str, size: int) -> StoredCheckpoint:
        """Raises NotFound, or `LogIntegrityError` if the tenant's log failed an integrity check."""
        self.require_intact(tenant)
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT size, root, note FROM audit_checkpoints WHERE tenant_id = ? AND size = ?",
                tenant,
                size,
            )
        if row is None:
            raise NotFound(f"no checkpoint of size {size}", code="checkpoint_not_found")
        return StoredCheckpoint(int(row["size"]), bytes(row["root"]), row["note"])

    async def checkpoint(self, tenant: str) -> StoredCheckpoint:
        """Integrate every entry appended so far and return the checkpoint that covers them.

        Raises NotFound for an unknown tenant, `LogIntegrityError` when the stored log does not check
        out (now, or earlier in this process).
        """
        self.require_intact(tenant)
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            while True:
                done = await self._integrate_step(tenant)
                if done is not None:
                    return done

    async def pending_tenants(self) -> list[str]:
        """Tenants whose chain has entries no checkpoint covers yet."""
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT audit_heads.tenant_id FROM audit_heads LEFT JOIN audit_tree_heads"
                " ON audit_tree_heads.tenant_id = audit_heads.tenant_id"
                " WHERE audit_tree_heads.size IS NULL OR audit_heads.size > audit_tree_heads.size"
            )
        return [row["tenant_id"] for row in rows]

    async def run_checkpoints(self, interval: float) -> None:
        """Checkpoint every tenant with new entries, every `interval` seconds, until cancelled.

        Every gateway process runs this. On PostgreSQL a tenant's integration is claimed with a
        session advisory lock (tried, never waited for), so one process does the work and the
        others skip that tenant for the round instead of repeating it.

        A tenant whose log failed an integrity check is skipped (it was logged when found), and
        one tenant's failure never holds up the others'.
        """
        while True:
            await asyncio.sleep(interval)
            try:
                tenants = await self.pending_tenants()
            except Unavailable as exc:  # an outage: the storage layer logs it once per interval
                log.debug("checkpointing skipped this round: %s", exc.code)
                tenants = []
            except Exception:  # a failed read of our own: log it, try again next round
                log.exception("checkpointing failed: could not list the logs to checkpoint")
                continue
            for tenant in tenants:
                if tenant in self.integrity.problems:
                    continue
                try:
                    async with self._claim(tenant) as claimed:
                        if claimed:
                            await self.checkpoint(tenant)
                except (LogIntegrityError, LogKeyUnknown):
                    continue  # logged where raised (a broken log: once, by `LogIntegrity.record`)
                except Unavailable as exc:  # an outage: the storage layer logs it once per interval
                    log.debug("checkpointing %s skipped this round: %s", tenant, exc.code)
                except Exception:  # a failed check: log it, try again next round
                    log.exception("checkpointing the log of tenant %s failed", tenant)

    @contextlib.asynccontextmanager
    async def _claim(self, tenant: str) -> AsyncIterator[bool]:
        if self.db.dialect != "postgresql":
            yield True
            return
        key = "hashtextextended(current_schema() || '/verdict-tree/' || ?, 0)"
        async with self.db.read() as conn:
            row = await conn.fetchrow(f"SELECT pg_try_advisory_lock({key}) AS ok", tenant)
            try:
                yield bool(row["ok"])
            finally:
                if row["ok"]:
                    await conn.fetchrow(f"SELECT pg_advisory_unlock({key}) AS ok", tenant)

    async def _integrate_step(self, tenant: str) -> StoredCheckpoint | None:
        """One step; returns the latest checkpoint once it covers the chain, None to go on.

        Entries are read and hashed in slices of `SLICE` with an await in between, so that a
        large step never holds the event loop for long: requests keep flowing meanwhile.

        Raises NotFound for an unknown tenant, `LogIntegrityError` (recorded) when a check fails.
        """
        self.require_intact(tenant)
        async with self.db.read() as conn:
            # the chain's head, the tree's head and the checkpoint that signs the latter: one read
            chain = await conn.fetchrow(
                "SELECT c.size, c.head, t.size AS tree_size, t.root, k.note FROM audit_heads c"
                " LEFT JOIN audit_tree_heads t ON t.tenant_id = c.tenant_id"
                " LEFT JOIN audit_checkpoints k ON k.tenant_id = c.tenant_id AND k.size = COALESCE(t.size, 0)"
                " WHERE c.tenant_id = ?",
                tenant,
            )
            if chain is None:
                raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")
            tree = chain["tree_size"] is not None
            old_size, old_root = (int(chain["tree_size"]), bytes(chain["root"])) if tree else (0, EMPTY_ROOT)
            chain_size = int(chain["size"])
            signed = chain if chain["note"] is not None else None
            if tree and old_size >= chain_size:
                if signed is None:
                    raise self._fail(tenant, f"no checkpoint signs the tree head of size {old_size}")
                return StoredCheckpoint(old_size, old_root, signed["note"])
            new_size = min(chain_size, old_size + MAX_INTEGRATION_STEP)
            proof_keys = consistency_keys(old_size, new_size)
            sample = pick_sample(old_size, self._rng, self.sample_size)
            wanted = set(frontier_keys(old_size)) | proof_keys | sample_keys(sample, old_size)
            if old_size:
                wanted.add((0, old_size - 1))
            stored = await read_hashes(conn, tenant, {k for k in wanted if within(k, old_size)})
            sampled = await read_entries(conn, tenant, sample)

        # (1) the tree head is the tree the last checkpoint signed; (2) earlier entries still are
        # what it holds (a sample; the start-up scan checks them all)
        if root_from(old_size, stored) != old_root:
            raise self._fail(tenant, f"the stored tree of size {old_size} does not fold to its recorded root")
        note = signed["note"] if signed else None
        verify_signed_head(self.integrity, tenant, old_size, old_root, note, self.verifiers(tenant))
        verify_sample(self.integrity, tenant, old_size, old_root, sampled, stored, sample)
        prev = stored[(0, old_size - 1)].hex() if old_size else GENESIS_PREV
        size, frontier, root = old_size, [stored[k] for k in frontier_keys(old_size)], old_root
        new_hashes: list[tuple[int, int, bytes]] = []
        for start in range(old_size, new_size, SLICE):
            end = min(new_size, start + SLICE)
            async with self.db.read() as conn:
                rows = await conn.fetch(
                    "SELECT seq, entry FROM audit_entries WHERE tenant_id = ? AND seq >= ? AND seq < ? ORDER BY seq",
                    tenant,
                    start,
                    end,
                )
            leaves, prev = self._check_entries(tenant, start, end, rows, prev, start == old_size)
            integrated = integrate(size, frontier, leaves)
            size, frontier, root = integrated.size, integrated.frontier, integrated.root
            new_hashes.extend(integrated.hashes)
            await asyncio.sleep(0)
        if new_size == chain_size and prev != chain["head"]:  # the last entry has no successor: the head
            raise self._fail(
                tenant, f"entry {new_size - 1} was changed: it does not hash to the chain head", new_size - 1
            )
        proof_hashes = {**stored, **{(lv, ix): h for lv, ix, h in new_hashes if (lv, ix) in proof_keys}}
        proof = consistency_proof_from(old_size, new_size, proof_hashes)
        try:  # the new tree extends the one the last checkpoint signed
            verify_consistency(old_size, new_size, old_root, root, proof)
        except AuditError as error:
            message = f"tree of size {new_size} is not consistent with size {old_size}: {error}"
            raise self._fail(tenant, message) from None
        note = sign_checkpoint(Checkpoint(self.origin(tenant), new_size, root), self.signer(tenant))

        if not await self._store_step(tenant, old_size, new_size, root, note, new_hashes):
            return None  # another process integrated meanwhile; start over from its head
        if new_size < chain_size:
            return None
        return StoredCheckpoint(new_size, root, note)

    async def _store_step(
        self,
        tenant: str,
        old_size: int,
        new_size: int,
        root: bytes,
        note: str,
        hashes: list[tuple[int, int, bytes]],
    ) -> bool:
        """Move the tree head from `old_size` to `new_size` with the new hashes and the signed
        checkpoint, unless another process moved it first (False: nothing written)."""
        created = rfc3339(utc_now())
        if self.db.dialect == "postgresql" and old_size > 0 and len(hashes) <= 2 * SLICE:
            # the usual step: one autocommit statement (one round trip) instead of a transaction
            # of six; the compare-and-set on the tree head decides, as the lock below does
            async with self.db.read() as conn:
                row = await conn.fetchrow(
                    "WITH moved AS (UPDATE audit_tree_heads SET size = ?, root = ?"
                    " WHERE tenant_id = ? AND size = ? RETURNING 1),"
                    " hashes AS (INSERT INTO audit_tree (tenant_id, level, idx, hash)"
                    " SELECT ?, l, i, h FROM unnest(?::int[], ?::bigint[], ?::bytea[]) AS t(l, i, h)"
                    " WHERE EXISTS (SELECT 1 FROM moved)),"
                    " signed AS (INSERT INTO audit_checkpoints (tenant_id, size, root, note, created_at)"
                    " SELECT ?, ?::bigint, ?::bytea, ?, ? WHERE EXISTS (SELECT 1 FROM moved))"
                    " SELECT count(*) AS moved FROM moved",
                    new_size, root, tenant, old_size,
                    tenant, [h[0] for h in hashes], [h[1] for h in hashes], [h[2] for h in hashes],
                    tenant, new_size, root, note, created,
                )  # fmt: skip
            return bool(row and row["moved"])
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO audit_tree_heads (tenant_id, size, root) VALUES (?, 0, ?) ON CONFLICT DO NOTHING",
                tenant,
                EMPTY_ROOT,
            )
            lock = " FOR UPDATE" if conn.dialect == "postgresql" else ""
            current = await conn.fetchrow(
                f"SELECT size FROM audit_tree_heads WHERE tenant_id = ?{lock}", tenant
            )
            if current is None or int(current["size"]) != old_size:
                return False
            for at in range(0, len(hashes), 2 * SLICE):
                await write_hashes(conn, tenant, hashes[at : at + 2 * SLICE])
            await conn.execute(
                "INSERT INTO audit_checkpoints (tenant_id, size, root, note, created_at) VALUES (?, ?, ?, ?, ?)",
                tenant,
                new_size,
                root,
                note,
                created,
            )
            await conn.execute(
                "UPDATE audit_tree_heads SET size = ?, root = ? WHERE tenant_id = ?", new_size, root, tenant
            )
        return True

    def _check_entries(
        self,
        tenant: str,
        start: int,
        end: int,
        rows: list[dict[str, Any]],
        prev: str,
        prev_is_stored: bool,
    ) -> tuple[list[bytes], str]:
        """The leaf hashes of entries [start, end), after checking that each is a canonical v1
        entry of the tenant in its place and that they continue the chain from `prev` (the stored
        leaf hash of entry start - 1 when `prev_is_stored`); and the new `prev`.

        Raises `LogIntegrityError` (recorded) naming the first entry that is not: for a broken
        link, the entry before it (its bytes no longer hash to the `prev` the next one recorded),
        unless that one is the stored leaf."""
        leaves = []
        for expected, row in enumerate(rows, start):
            raw = bytes(row["entry"])
            if int(row["seq"]) != expected:
                raise self._fail(tenant, f"entry {expected} is missing", expected)
            try:
                entry = parse_entry_at(expected, raw)
            except AuditError as error:
                raise self._fail(tenant, str(error), expected) from None
            if entry.seq != expected or entry.tenant != tenant:
                message = f"entry {expected} is out of place: it says seq {entry.seq} of {entry.tenant!r}"
                raise self._fail(tenant, message, expected)
            if entry.prev != prev:
                message = f"entry {expected - 1} or {expected} was changed: they do not link"
                trusted = prev_is_stored and expected == start
                raise self._fail(tenant, message, expected if trusted else expected - 1)
            leaf = hash_leaf(raw)
            leaves.append(leaf)
            prev = leaf.hex()
        if len(leaves) != end - start:
            missing = start + len(leaves)
            raise self._fail(tenant, f"entries {missing}..{end - 1} are missing", missing)
        return leaves, prev

    def _fail(self, tenant: str, message: str, seq: int | None = None) -> LogIntegrityError:
        """Record the tenant's log as broken (logged once) and return the error to raise."""
        return self.integrity.record(tenant, f"{message}; no checkpoint signed", seq)

    # ---- proofs

    async def _covering(self, tenant: str, size: int) -> None:
        """Make sure the tree covers `size`: integrate when it does not yet."""
        latest = await self.latest(tenant)
        if latest is None or latest.size < size:
            await self.checkpoint(tenant)

    async def inclusion_proof(self, tenant: str, index: int, size: int) -> list[bytes]:
        """Raises InvalidRequest unless 0 <= index < size <= the log's size."""
        await self._check_size(tenant, size)
        if not 0 <= index < size:
            raise InvalidRequest(f"need 0 <= index < size ({size})", code="invalid_range")
        await self._covering(tenant, size)
        async with self.db.read() as conn:
            stored = await read_hashes(conn, tenant, inclusion_keys(index, size))
        return inclusion_proof_from(index, size, stored)

    async def consistency_proof(self, tenant: str, old_size: int, new_size: int) -> list[bytes]:
        """Raises InvalidRequest unless 0 <= old_size <= new_size <= the log's size."""
        await self._check_size(tenant, new_size)
        if not 0 <= old_size <= new_size:
            raise InvalidRequest(f"need 0 <= from <= to ({new_size})", code="invalid_range")
        await self._covering(tenant, new_size)
        async with self.db.read() as conn:
            stored = await read_hashes(conn, tenant, consistency_keys(old_size, new_size))
        return consistency_proof_from(old_size, new_size, stored)

    async def _check_size(self, tenant: str, size: int) -> None:
        """Raises `LogIntegrityError` for a broken log, NotFound, InvalidRequest for a size beyond it."""
        self.require_intact(tenant)
        async with self.db.read() as conn:
            chain = await conn.fetchrow("SELECT size FROM audit_heads WHERE tenant_id = ?", tenant)
        if chain is None:
            raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")
        if not 0 <= size <= int(chain["size"]):
            raise InvalidRequest(
                f"tree size {size} is not in 0..{chain['size']} (the log's size)", code="invalid_range"
            )

    # ---- whole-log check (`gateway.services.log_scan`)

    async def check_log(self, tenant: str, *, page: int = CHECK_PAGE) -> LogCheckReport:
        """Re-verify the tenant's whole log from the database (`verdict audit check`); see
        `log_scan.check_log`. Raises NotFound, or an `AuditError` naming the first thing that fails."""
        return await check_log(self.db, tenant, self.verifiers(tenant), page=page)

    async def verify_logs(self, *, page: int = SCAN_PAGE, retry_seconds: float = SCAN_RETRY_SECONDS) -> None:
        """The start-up scan: every tenant's whole log, in the background; see `log_scan.verify_logs`."""
        await verify_logs(self.db, self.integrity, self.verifiers, page=page, retry_seconds=retry_seconds)

    # ---- bundles

    async def bundle(
        self, tenant: str, indexes: Iterable[int], *, limit: int | None = MAX_BUNDLE_ENTRIES
    ) -> dict[str, Any]:
        """A `verdict-proof/v1` bundle of the entries at `indexes`, against a checkpoint covering them."""
        wanted = sorted(set(indexes))
        if not wanted:
            raise InvalidRequest("a bundle needs at least one entry", code="invalid_range")
        if limit is not None and len(wanted) > limit:
            raise InvalidRequest(f"at most {limit} entries per bundle", code="invalid_range")
        await self._check_size(tenant, wanted[-1] + 1)
        checkpoint = await self.published(tenant, wanted[-1] + 1)
        entries = []
        for at in range(0, len(wanted), MAX_BUNDLE_ENTRIES):
            chunk = wanted[at : at + MAX_BUNDLE_ENTRIES]
            keys: set[Key] = set()
            for index in chunk:
                keys |= inclusion_keys(index, checkpoint.size)
            async with self.db.read() as conn:
                stored = await read_hashes(conn, tenant, keys)
                raws = await read_entries(conn, tenant, chunk)
            entries.extend((i, raws[i], inclusion_proof_from(i, checkpoint.size, stored)) for i in chunk)
        return make_bundle(
            origin=self.origin(tenant), vkey=self.vkey(tenant), checkpoint=checkpoint.note, entries=entries
        )

    async def action_bundle(self, principal: Principal, action_id: str) -> dict[str, Any]:
        """The bundle of every entry of one action. Raises NotFound for an action the principal
        may not read."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT id, tenant_id, agent_id, audit_event_ids FROM actions WHERE tenant_id = ? AND id = ?",
                principal.tenant_id,
                action_id,
            )
        if row is None:
            raise NotFound(f"action {action_id!r} not found", code="action_not_found")
        ActionService.check_can_read(principal, row)
        return await self.bundle(row["tenant_id"], msgspec.json.decode(row["audit_event_ids"]))


async def read_hashes(conn: Conn, tenant: str, keys: Iterable[Key]) -> dict[Key, bytes]:
    """The stored subtree hashes at `keys` (those that exist).

    PostgreSQL: one query joining the keys as arrays. SQLite: one query per level, `idx IN (…)`.
    Both use the primary key (an OR of one term per (level, idx) pair made SQLite scan the tree:
    some 700 ms for the 200 keys of a 20,000-entry log, against about 5 ms this way)."""
    keys = sorted(set(keys))
    if conn.dialect == "postgresql":
        found: dict[Key, bytes] = {}
        for at in range(0, len(keys), 8 * _KEYS_PER_QUERY):
            chunk = keys[at : at + 8 * _KEYS_PER_QUERY]
            rows = await conn.fetch(
                "SELECT t.level, t.idx, t.hash FROM unnest(?::int[], ?::bigint[]) AS k(l, i)"
                " JOIN audit_tree t ON t.tenant_id = ? AND t.level = k.l AND t.idx = k.i",
                [key[0] for key in chunk],
                [key[1] for key in chunk],
                tenant,
            )
            found.update({(int(r["level"]), int(r["idx"])): bytes(r["hash"]) for r in rows})
        return found
    by_level: dict[int, list[int]] = {}
    for level, index in keys:
        by_level.setdefault(level, []).append(index)
    found = {}
    for level, indexes in by_level.items():
        for at in range(0, len(indexes), _KEYS_PER_QUERY):
            chunk = indexes[at : at + _KEYS_PER_QUERY]
            rows = await conn.fetch(
                "SELECT idx, hash FROM audit_tree WHERE tenant_id = ? AND level = ?"
                f" AND idx IN ({', '.join('?' * len(chunk))})",
                tenant,
                level,
                *chunk,
            )
            found.update({(level, int(r["idx"])): bytes(r["hash"]) for r in rows})
    return found


async def write_hashes(conn: Conn, tenant: str, hashes: Sequence[tuple[int, int, bytes]]) -> None:
    if not hashes:
        return
    if conn.dialect == "postgresql":  # one statement, whatever the count
        await conn.execute(
            "INSERT INTO audit_tree (tenant_id, level, idx, hash)"
            " SELECT ?, l, i, h FROM unnest(?::int[], ?::bigint[], ?::bytea[]) AS t(l, i, h)",
            tenant,
            [h[0] for h in hashes],
            [h[1] for h in hashes],
            [h[2] for h in hashes],
        )
    else:
        await conn.executemany(
            "INSERT INTO audit_tree (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)",
            [(tenant, level, index, digest) for level, index, digest in hashes],
        )


async def read_entries(conn: Conn, tenant: str, indexes: Sequence[int]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for at in range(0, len(indexes), _KEYS_PER_QUERY):
        chunk = indexes[at : at + _KEYS_PER_QUERY]
        rows = await conn.fetch(
            f"SELECT seq, entry FROM audit_entries WHERE tenant_id = ? AND seq IN ({', '.join('?' * len(chunk))})",
            tenant,
            *chunk,
        )
        found.update({int(r["seq"]): bytes(r["entry"]) for r in rows})
    return found
