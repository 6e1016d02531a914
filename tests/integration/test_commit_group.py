"""Several tenants' fast-path batches in one transaction (`gateway.ledger.CommitGroup`), against
PostgreSQL: each chain stays serial, a stale head writes nothing for its tenant only, and the
chain writers of many tenants commit together."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from audit import verify_chain
from gateway.auth import Principal
from gateway.events.wakeups import open_events
from gateway.ledger import CommitGroup, EntryDraft, Head, Ledger, Unit, chain_units
from gateway.schemas import CreateTenant
from gateway.services.tenants import TenantService
from gateway.storage import Insert, open_database
from gateway.storage.postgres import _append_many_statement

ADMIN = Principal("test", "admin", None, None)
TENANTS = ("t1", "t2", "t3")
TIME = "2026-01-01T00:00:00.000000Z"


@pytest.fixture
async def db(backend):
    if backend.name != "postgresql":
        pytest.skip("the one-statement append, hence its grouping, is PostgreSQL's")
    database = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await database.open()
    for tenant in TENANTS:
        await TenantService(database, None).create_tenant(ADMIN, CreateTenant(id=tenant, name=tenant))
    yield database
    await database.close()


def agent_unit(tenant: str, n: int) -> Unit:
    columns = ("tenant_id", "id", "name", "created_at")
    return Unit(
        [EntryDraft("agent.created", "test", {"n": n})],
        inserts=lambda seqs: [Insert("agents", columns, (tenant, f"a{n}", f"seq {seqs[0]}", "t"))],
    )


async def head_of(db, tenant: str) -> Head:
    async with db.read() as conn:
        row = await conn.fetchrow("SELECT size, head FROM audit_heads WHERE tenant_id = ?", tenant)
    return Head(int(row["size"]), row["head"])


async def chain_of(db, tenant: str) -> list[bytes]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT entry FROM audit_entries WHERE tenant_id = ? ORDER BY seq", tenant)
    entries = [bytes(row["entry"]) for row in rows]
    verify_chain(entries, tenant=tenant)
    return entries


def arguments(tenant: str, expected: Head, n: int, **conditions) -> dict:
    """`append_batch`'s arguments for one agent.created entry on `expected`."""
    chained = chain_units(tenant, [agent_unit(tenant, n)], expected, TIME)
    return {
        "expected_head": (expected.size, expected.hash),
        "new_head": (chained.head.size, chained.head.hash),
        "policy_version": None,
        "credentials": ([], TIME),
        "entry_rows": chained.entry_rows,
        "inserts": chained.inserts,
    } | conditions


async def append(group: CommitGroup, tenant: str, expected: Head, n: int) -> bool:
    return await group.append(tenant, **arguments(tenant, expected, n))


async def test_batches_of_several_tenants_commit_in_one_transaction_each_on_its_own_head(db):
    group = CommitGroup(db)
    heads = {tenant: await head_of(db, tenant) for tenant in TENANTS}
    # all three arrive before the group's task first runs: one transaction carries them
    results = await asyncio.gather(*(append(group, tenant, heads[tenant], 1) for tenant in reversed(TENANTS)))
    assert results == [True, True, True]
    assert (group.transactions, group.batches) == (1, 3)
    # a stale head writes nothing for its tenant, and the others commit all the same
    stale = heads["t2"]  # t2 has moved on since
    fresh = {tenant: await head_of(db, tenant) for tenant in TENANTS}
    results = await asyncio.gather(
        append(group, "t1", fresh["t1"], 2),
        append(group, "t2", stale, 2),
        append(group, "t3", fresh["t3"], 2),
    )
    # t2's answer is its current head, on which its writer tries again (without reading it)
    assert results == [True, (fresh["t2"].size, fresh["t2"].hash), True]
    assert (group.transactions, group.batches) == (2, 6)
    assert [len(await chain_of(db, tenant)) for tenant in TENANTS] == [3, 2, 3]  # tenant.created + appends


async def test_a_failing_statement_writes_nothing_for_any_tenant_of_its_transaction(db):
    group = CommitGroup(db)
    heads = {tenant: await head_of(db, tenant) for tenant in TENANTS}
    assert await append(group, "t1", heads["t1"], 1)
    moved = await head_of(db, "t1")
    # agent a1 of t1 exists already: t1's insert fails, and t3's statement is rolled back with it
    with pytest.raises(asyncpg.UniqueViolationError):
        await asyncio.gather(append(group, "t1", moved, 1), append(group, "t3", heads["t3"], 1))
    assert [len(await chain_of(db, tenant)) for tenant in ("t1", "t3")] == [2, 1]


async def test_proposals_of_many_tenants_keep_every_chain_whole(db):
    ledger = Ledger(db)
    try:
        units = {tenant: [agent_unit(tenant, n) for n in range(1, 6)] for tenant in TENANTS}
        # the writers read their heads under lock first; later batches take the grouped fast path
        for tenant in TENANTS:
            assert await ledger.append(tenant, units[tenant][0]) == [1]
        later = [(tenant, units[tenant][n]) for n in range(1, 5) for tenant in TENANTS]
        seqs = await asyncio.gather(*(ledger.append(tenant, unit) for tenant, unit in later))
        assert sorted(s[0] for s in seqs) == sorted([2, 3, 4, 5] * len(TENANTS))
        assert ledger.group.transactions >= 1 and ledger.group.batches >= len(TENANTS)
        for tenant in TENANTS:
            assert len(await chain_of(db, tenant)) == 6
    finally:
        await ledger.close()


# Each condition of the compare-and-set, failing for t2 only. The rows these need: a revoked
# key `k-revoked` and an idempotency record of agent `bot` with key `used` (set up below).
REFUSALS = {
    "policy": {"policy_version": (7,)},  # t2 has no active policy
    "configuration": {"config_version": 99},
    "revoked key": {"credentials": (["k-revoked"], TIME)},
    "rate limit": {"rate": (1, ["bot"], [10**6])},
    "idempotency key": {"idempotency": (["bot"], ["used"])},
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
async def test_each_condition_refuses_its_own_tenant_only_in_a_grouped_statement(db, refusal):
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO api_keys (id, tenant_id, role, token_hash, created_at, revoked_at)"
            " VALUES ('k-revoked', 't2', 'agent', 'h', ?, ?)",
            TIME,
            TIME,
        )
        await conn.execute(
            "INSERT INTO idempotency_keys VALUES ('t2', 'bot', 'used', 'r', 'act', '{}', ?)", TIME
        )
    heads = {tenant: await head_of(db, tenant) for tenant in TENANTS}
    conditions = {"t2": REFUSALS[refusal]}
    batches = [(t, arguments(t, heads[t], 1, **conditions.get(t, {}))) for t in TENANTS]
    assert _append_many_statement(batches) is not None  # the one-statement path, not the fallback
    # refused with its head where it was: the writer knows a condition failed, not a stale head
    assert await db.append_batches(batches) == [True, (heads["t2"].size, heads["t2"].hash), True]
    assert [len(await chain_of(db, tenant)) for tenant in TENANTS] == [2, 1, 2]
    async with db.read() as conn:
        agents = await conn.fetch("SELECT tenant_id FROM agents ORDER BY tenant_id")
        windows = await conn.fetch("SELECT tenant_id FROM rate_windows")
    assert [row["tenant_id"] for row in agents] == ["t1", "t3"]
    assert windows == []
    # the one-tenant statement refuses the same batch, and takes it without the condition
    assert not await db.append_batch("t2", **batches[1][1])
    assert await db.append_batch("t2", **arguments("t2", heads["t2"], 1))


async def test_a_grouped_statement_counts_proposals_into_each_tenants_window(db):
    heads = {tenant: await head_of(db, tenant) for tenant in TENANTS}
    batches = [(t, arguments(t, heads[t], 1, rate=(5, ["bot"], [i + 1]))) for i, t in enumerate(TENANTS)]
    assert await db.append_batches(batches) == [True, True, True]
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, window_start, proposals FROM rate_windows ORDER BY tenant_id"
        )
    assert [(r["tenant_id"], r["window_start"], r["proposals"]) for r in rows] == [
        ("t1", 5, 1),
        ("t2", 5, 2),
        ("t3", 5, 3),
    ]


async def test_processes_racing_on_one_chain_never_need_the_locked_path(db):
    """Four ledgers on one database (as four gateway processes) append to one chain at the
    same moment, again and again: each round one wins and the others find their heads stale.
    The statement answers the current head and the losers chain their batches again; the last
    attempt holds the head's lock, so a batch that no condition refuses always commits in one
    statement, however often a writer loses the race."""
    ledgers = [Ledger(db) for _ in range(4)]
    try:
        for n, ledger in enumerate(ledgers):  # each writer reads its head (under lock) once
            assert await ledger.append("t1", agent_unit("t1", 1000 + n)) == [n + 1]
        writers = [ledger._writer("t1") for ledger in ledgers]
        locked = [writer.batches["locked"] for writer in writers]
        for n in range(25):
            await asyncio.gather(
                *(ledger.append("t1", agent_unit("t1", 10 * n + i)) for i, ledger in enumerate(ledgers))
            )
        assert [writer.batches["locked"] for writer in writers] == locked
        assert sum(writer.batches["fast"] for writer in writers) == 100
        assert len(await chain_of(db, "t1")) == 105
    finally:
        for ledger in ledgers:
            await ledger.close()


async def test_a_locked_attempt_chains_on_the_current_head_and_answers_a_refusal_with_it(db):
    stale = await head_of(db, "t1")
    assert await append(CommitGroup(db), "t1", stale, 1)
    current = await head_of(db, "t1")
    assert await db.append_batch_locked("t1", lambda size, hash: arguments("t1", Head(size, hash), 2))
    assert len(await chain_of(db, "t1")) == 3
    moved = await head_of(db, "t1")
    refused = await db.append_batch_locked(
        "t1", lambda size, hash: arguments("t1", Head(size, hash), 3, config_version=99)
    )
    assert refused == (moved.size, moved.hash) and moved != current


async def test_a_writer_chains_on_the_head_another_process_notified(db):
    """Two processes' ledgers take turns on one chain. Each commit's NOTIFY carries the new
    head, and the other process's writer chains its next batch on it: its compare-and-set
    does not fail on the head it wrote last."""
    ledgers = [Ledger(db), Ledger(db)]
    wakeups = [open_events(db, ledger) for ledger in ledgers]
    try:
        await asyncio.wait_for(asyncio.gather(*(w.listener.connected.wait() for w in wakeups)), 10)
        for n, ledger in enumerate(ledgers):  # each writer reads its head (under lock) once
            await ledger.append("t1", agent_unit("t1", 1000 + n))
        writers = [ledger._writer("t1") for ledger in ledgers]

        async def heard_by(writer, size: int) -> None:
            for _ in range(500):  # the other process hears of the commit
                if writer._head is not None and writer._head.size == size:
                    break
                await asyncio.sleep(0.01)
            assert writer._head == await head_of(db, "t1")

        await heard_by(writers[0], 3)  # the second writer's commit, on the locked path, named it
        for n in range(12):
            [seq] = await ledgers[n % 2].append("t1", agent_unit("t1", n))
            await heard_by(writers[(n + 1) % 2], seq + 1)
        # no turn finds its head stale
        assert sum(writer.stale_heads for writer in writers) == 0
        assert len(await chain_of(db, "t1")) == 15
    finally:
        for w in wakeups:
            await w.close()
        for ledger in ledgers:
            await ledger.close()
