"""Re-checking whole logs from the database: `verdict audit check`, and the gateway's own scan of
every tenant's log at start-up, in the background (`verify_logs`).

Both run `audit.check.LogChecker` over every entry, with the leaf hash the tree stored for each, so
a failure names the first entry whose bytes no longer match; and compare every stored subtree hash
with the recomputed one. The start-up scan reads smaller pages and yields to the event loop between
slices of entries, so the server answers meanwhile; it records a broken log in `LogIntegrity`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from audit.check import LogChecker, LogCheckReport
from audit.errors import AuditError, LogCheckError, UnverifiedNoteError
from audit.note import NoteVerifier
from audit.tree import within
from gateway.errors import NotFound
from gateway.health import log_failure
from gateway.services.log_integrity import LogIntegrity
from gateway.storage import Database

log = logging.getLogger("verdict.audit")

SLICE = 128  # entries checked between two awaits


async def check_log(
    db: Database, tenant: str, verifiers: Sequence[NoteVerifier], *, page: int
) -> LogCheckReport:
    """Re-verify the tenant's whole log: every entry (canonical, in its place, hashing to its stored
    leaf) and link, every checkpoint's signature (under one of `verifiers`) and root, every stored
    subtree hash, the chain head.

    Safe while gateways append and integrate: it checks the log as far as the chain head it read
    after the checkpoints (entries and stored hashes never change once written).

    Raises NotFound for an unknown tenant, an `AuditError` naming the first thing that fails (with
    `seq` when it is one entry).
    """
    async with db.read() as conn:
        # in this order: each one only grows, so the chain read last covers every checkpoint
        head = await conn.fetchrow("SELECT size FROM audit_tree_heads WHERE tenant_id = ?", tenant)
        notes = await conn.fetch(
            "SELECT note FROM audit_checkpoints WHERE tenant_id = ? ORDER BY size", tenant
        )
        chain = await conn.fetchrow("SELECT size, head FROM audit_heads WHERE tenant_id = ?", tenant)
    if chain is None:
        raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")
    integrated, chain_size = (int(head["size"]) if head else 0), int(chain["size"])
    checker = LogChecker(tenant, [row["note"] for row in notes], verifiers)

    async def read_page(start: int) -> list[dict[str, Any]]:
        # both ranges bounded to the page: with only `LIMIT`, PostgreSQL merged the whole rest of
        # the log for every page
        end = min(chain_size, start + page)
        async with db.read() as conn:
            return await conn.fetch(
                "SELECT e.seq, e.entry, t.hash FROM audit_entries e LEFT JOIN audit_tree t"
                " ON t.tenant_id = e.tenant_id AND t.level = 0 AND t.idx = e.seq AND t.idx >= ? AND t.idx < ?"
                " WHERE e.tenant_id = ? AND e.seq >= ? AND e.seq < ? ORDER BY e.seq",
                start,
                end,
                tenant,
                start,
                end,
            )

    position = 0
    rows = await read_page(0)
    while rows:
        # read the next page while this one is checked
        following = asyncio.get_running_loop().create_task(read_page(position + len(rows)))
        try:
            computed: list[tuple[int, int, bytes]] = []
            for at in range(0, len(rows), SLICE):
                raws, stored = _page_slice(rows[at : at + SLICE], position + at, integrated)
                computed += checker.add(raws, stored)
                await asyncio.sleep(0)
            # level 0 (the leaves) was compared entry by entry
            await _compare_stored(db, tenant, [h for h in computed if h[0] and within(h[:2], integrated)])
        except BaseException:
            following.cancel()
            raise
        position += len(rows)
        rows = await following
    report = checker.finish()
    if report.size != chain_size:
        raise LogCheckError(
            f"the chain head says {chain_size} entries, the log holds {report.size}: entry {report.size}"
            " is missing",
            seq=report.size,
        )
    if report.size and chain["head"] != checker.last_leaf_hex:
        last = report.size - 1
        raise LogCheckError(f"entry {last} was changed: it does not hash to the chain head", seq=last)
    if report.size < integrated:
        raise LogCheckError(f"the tree integrates {integrated} entries, the log holds {report.size}")
    return report


async def verify_logs(
    db: Database,
    integrity: LogIntegrity,
    verifiers: Callable[[str], Sequence[NoteVerifier]],
    *,
    page: int,
    retry_seconds: float,
) -> None:
    """`check_log` every tenant's log, one after the other, and record in `integrity` each one that
    fails. A database outage is retried after `retry_seconds`, not recorded. Returns when every log
    was checked once."""
    while True:
        try:
            async with db.read() as conn:
                rows = await conn.fetch("SELECT tenant_id FROM audit_heads ORDER BY tenant_id")
            break
        except Exception:
            log_failure(log, "could not list the logs to verify; retrying in %s s", retry_seconds)
            await asyncio.sleep(retry_seconds)
    for row in rows:
        tenant = row["tenant_id"]
        attempt = 0
        while not await _verify_log(db, integrity, tenant, verifiers(tenant), page, last_try=attempt >= 1):
            attempt += 1
            await asyncio.sleep(retry_seconds)


async def _verify_log(
    db: Database,
    integrity: LogIntegrity,
    tenant: str,
    verifiers: Sequence[NoteVerifier],
    page: int,
    *,
    last_try: bool,
) -> bool:
    """One tenant's scan; False when the database failed it (to try again), or a checkpoint is
    signed by a key not known here (a rotation by another process: once more, with the keys then)."""
    began = time.perf_counter()
    try:
        report = await check_log(db, tenant, verifiers, page=page)
    except NotFound:
        return True
    except UnverifiedNoteError as error:
        if not last_try:
            log.warning("audit log of tenant %s: %s; checking again with the keys reloaded", tenant, error)
            return False
        integrity.record(tenant, str(error))
        return True
    except AuditError as error:
        integrity.record(tenant, str(error), getattr(error, "seq", None))
        return True
    except Exception:  # the database, not the log
        log_failure(log, "could not verify the audit log of tenant %s; will retry", tenant)
        return False
    log.info(
        "audit log of tenant %s verified: %d entries, %d checkpoints (%.1f s)",
        tenant,
        report.size,
        report.checkpoints,
        time.perf_counter() - began,
    )
    return True


async def _compare_stored(db: Database, tenant: str, computed: list[tuple[int, int, bytes]]) -> None:
    """Raises `LogCheckError` if a stored subtree hash is not the recomputed one."""
    by_level: dict[int, dict[int, bytes]] = {}
    for level, index, digest in computed:
        by_level.setdefault(level, {})[index] = digest
    async with db.read() as conn:
        for level, expected in by_level.items():
            rows = await conn.fetch(
                "SELECT idx, hash FROM audit_tree WHERE tenant_id = ? AND level = ? AND idx >= ? AND idx <= ?",
                tenant,
                level,
                min(expected),
                max(expected),
            )
            stored = {int(r["idx"]): bytes(r["hash"]) for r in rows}
            for index, digest in expected.items():
                if stored.get(index) != digest:
                    raise LogCheckError(f"stored subtree hash ({level}, {index}) is missing or wrong")


def _page_slice(
    rows: Sequence[dict[str, Any]], position: int, integrated: int
) -> tuple[list[bytes], list[bytes | None]]:
    """The entry bytes of `rows` (the entries from `position` on) and the leaf hash stored for each
    (None beyond the integrated tree). Raises `LogCheckError` for a row out of place (deleted
    entries), or a missing stored leaf within the tree."""
    raws: list[bytes] = []
    stored: list[bytes | None] = []
    for expected, row in enumerate(rows, position):
        if int(row["seq"]) != expected:
            raise LogCheckError(
                f"entry {expected} is missing (the next one stored is {row['seq']})", seq=expected
            )
        if expected < integrated and row["hash"] is None:
            raise LogCheckError(f"the stored leaf hash of entry {expected} is missing", seq=expected)
        raws.append(bytes(row["entry"]))
        stored.append(bytes(row["hash"]) if expected < integrated else None)
    return raws, stored
