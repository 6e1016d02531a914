"""Appending to tenants' audit logs, in the same transaction as the state change.

Every state change is a `Unit`: the audit entries it appends and the SQL statements
that change state. `Ledger.append` hands a unit to the tenant's `ChainWriter`, a task
that takes every unit waiting for that tenant and writes them in ONE transaction
(group commit): it locks the tenant's chain head row, assigns `seq` and `prev`, inserts
the entries and the units' statements, and commits. Only after the commit does
`append` return, so a response is never sent for anything that is not durable
(DESIGN invariants 2 and 3). The head row lock keeps one chain without forks when
several gateway processes share one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from audit.entry import GENESIS_PREV, encode_entry, leaf_hash
from gateway.clock import rfc3339, utc_now
from gateway.errors import AppError, NotFound
from gateway.storage import Conn, Database

log = logging.getLogger("verdict.ledger")

Statement = tuple[str, tuple[Any, ...]]
MAX_BATCH = 512


@dataclass(slots=True)
class EntryDraft:
    """An entry before the chain gives it `seq`, `prev` and `time`."""

    type: str
    actor: str
    data: dict[str, Any]
    action_id: str | None = None


@dataclass(slots=True, eq=False)
class Unit:
    """One state change and its audit entries.

    `prepare` (optional) runs first inside the transaction; it may read and may raise an
    `AppError` to refuse the unit, but must not write. `statements` receives the seqs
    assigned to the unit's entries and returns the writes.
    """

    entries: list[EntryDraft]
    statements: Callable[[list[int]], list[Statement]] = lambda seqs: []
    prepare: Callable[[Conn], Awaitable[None]] | None = None
    # A decision made under a policy version commits only if that version is still the
    # active one (DESIGN invariant 6): checked under the chain head lock, so no race.
    expects_policy: bool = False
    policy_version: int | None = None
    # Set (by `prepare` or the caller) when this unit makes a version the active one.
    activates_policy: int | None = None
    future: asyncio.Future[list[int]] | None = field(default=None, repr=False)


class PolicyVersionChanged(AppError):
    """The tenant's active policy changed between the decision and its commit; decide again."""

    status, code, title = 409, "policy_changed", "The active policy changed"

    def __init__(self, active: int | None) -> None:
        super().__init__(f"the active policy is now version {active}")
        self.active = active


async def write_units(conn: Conn, tenant: str, units: list[Unit], *, lock: str) -> list[list[int] | AppError]:
    """Write units into the tenant's chain inside an open transaction.

    Returns, per unit, the seqs of its entries, or the `AppError` its `prepare` raised.
    Raises NotFound when the tenant has no chain; database errors propagate (the caller
    rolls back).
    """
    head = await conn.fetchrow(
        "SELECT audit_heads.size, audit_heads.head, tenants.active_policy_version FROM audit_heads"
        f" JOIN tenants ON tenants.id = audit_heads.tenant_id WHERE audit_heads.tenant_id = ?{lock}",
        tenant,
    )
    if head is None:
        raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")
    size, prev, active_policy = int(head["size"]), head["head"], head["active_policy_version"]
    time = rfc3339(utc_now())
    entry_rows: list[tuple[Any, ...]] = []
    results: list[list[int] | AppError] = []
    pending_sql: str | None = None
    pending_rows: list[tuple[Any, ...]] = []

    async def flush() -> None:
        nonlocal pending_sql, pending_rows
        if pending_sql is not None:
            if len(pending_rows) == 1:
                await conn.execute(pending_sql, *pending_rows[0])
            else:
                await conn.executemany(pending_sql, pending_rows)
        pending_sql, pending_rows = None, []

    for unit in units:
        if unit.prepare is not None:
            await flush()  # a prepare may read what earlier units wrote
            try:
                await unit.prepare(conn)
            except AppError as exc:
                results.append(exc)
                continue
        if unit.expects_policy and unit.policy_version != active_policy:
            results.append(PolicyVersionChanged(active_policy))
            continue
        if unit.activates_policy is not None:
            active_policy = unit.activates_policy
        seqs = []
        for draft in unit.entries:
            raw = encode_entry(
                seq=size,
                tenant=tenant,
                type=draft.type,
                time=time,
                action_id=draft.action_id,
                actor=draft.actor,
                data=draft.data,
                prev=prev,
            )
            entry_rows.append((tenant, size, raw))
            seqs.append(size)
            prev = leaf_hash(raw).hex()
            size += 1
        for sql, args in unit.statements(seqs):
            if sql != pending_sql:
                await flush()
                pending_sql = sql
            pending_rows.append(args)
        results.append(seqs)
    await flush()
    if entry_rows:
        await conn.executemany(
            "INSERT INTO audit_entries (tenant_id, seq, entry) VALUES (?, ?, ?)", entry_rows
        )
        await conn.execute(
            "UPDATE audit_heads SET size = ?, head = ? WHERE tenant_id = ?", size, prev, tenant
        )
    return results


async def create_chain(conn: Conn, tenant: str) -> None:
    """Start a tenant's empty chain (inside the transaction that creates the tenant)."""
    await conn.execute(
        "INSERT INTO audit_heads (tenant_id, size, head) VALUES (?, 0, ?)", tenant, GENESIS_PREV
    )


class ChainWriter:
    """The single writer of one tenant's chain in this process (group commit)."""

    def __init__(self, db: Database, tenant: str) -> None:
        self.db = db
        self.tenant = tenant
        self._queue: asyncio.Queue[Unit] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"chain-writer:{tenant}")

    async def append(self, unit: Unit) -> list[int]:
        unit.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(unit)
        return await unit.future

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[Unit]) -> None:
        try:
            async with self.db.transaction() as conn:
                results = await write_units(conn, self.tenant, batch, lock=self.db.for_update())
        except Exception as exc:
            if len(batch) > 1:
                for unit in batch:
                    await self._write([unit])
                return
            if not isinstance(exc, AppError):
                log.exception("audit append failed for tenant %s", self.tenant)
            _settle(batch[0], exc)
            return
        for unit, result in zip(batch, results, strict=True):
            _settle(unit, result)


def _settle(unit: Unit, result: list[int] | BaseException) -> None:
    future = unit.future
    if future is None or future.done():  # the caller went away; the unit is committed regardless
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Ledger:
    """The chain writers of this process, one per tenant, created on first use."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writers: dict[str, ChainWriter] = {}

    async def append(self, tenant: str, unit: Unit) -> list[int]:
        writer = self._writers.get(tenant)
        if writer is None:
            writer = self._writers[tenant] = ChainWriter(self.db, tenant)
        return await writer.append(unit)

    async def close(self) -> None:
        for writer in self._writers.values():
            await writer.close()
        self._writers.clear()
