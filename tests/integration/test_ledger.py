"""The chain writer's two write paths, against the real databases."""

from __future__ import annotations

import asyncio

import pytest

from audit import GENESIS_PREV, verify_chain
from gateway.auth import Principal
from gateway.errors import NotFound
from gateway.ledger import ChainWriter, EntryDraft, Head, Lookup, Unit, chain_units, write_units
from gateway.schemas import CreateTenant
from gateway.services.tenants import TenantService
from gateway.storage import Insert, open_database

ADMIN = Principal("test", "admin", None, None)
AGENT_COLUMNS = ("tenant_id", "id", "name", "created_at")


@pytest.fixture
async def db(backend):
    database = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await database.open()
    await TenantService(database, None).create_tenant(ADMIN, CreateTenant(id="acme", name="Acme"))
    yield database
    await database.close()


def agent_unit(n: int, *, policy: int | None = None, expects: bool = False) -> Unit:
    return Unit(
        [EntryDraft("agent.created", "test", {"n": n})],
        inserts=lambda seqs: [Insert("agents", AGENT_COLUMNS, ("acme", f"a{n}", f"seq {seqs[0]}", "t"))],
        expects_policy=expects,
        policy_version=policy,
    )


async def stored(db) -> tuple[list[bytes], list[dict]]:
    async with db.read() as conn:
        entries = await conn.fetch("SELECT entry FROM audit_entries WHERE tenant_id = 'acme' ORDER BY seq")
        agents = await conn.fetch("SELECT id, name FROM agents WHERE tenant_id = 'acme' ORDER BY id")
    return [bytes(row["entry"]) for row in entries], agents


async def add_key(db, key_id: str, *, revoked_at=None, expires_at=None) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO api_keys (id, tenant_id, role, agent_id, token_hash, created_at, revoked_at, expires_at)"
            " VALUES (?, 'acme', 'agent', NULL, ?, 't', ?, ?)",
            key_id,
            key_id,
            revoked_at,
            expires_at,
        )


async def head_of(db) -> Head:
    async with db.read() as conn:
        row = await conn.fetchrow("SELECT size, head FROM audit_heads WHERE tenant_id = 'acme'")
    return Head(int(row["size"]), row["head"])


async def test_fast_append_applies_only_on_the_expected_head_and_policy(db):
    if not db.supports_fast_append:
        pytest.skip("SQLite appends through the locked path only")
    head = await head_of(db)
    assert head.size == 1 and head.hash != GENESIS_PREV  # tenant.created
    chained = chain_units("acme", [agent_unit(1), agent_unit(2)], head, "2026-01-01T00:00:00.000000Z")

    async def attempt(expected: Head, policy, keys=()) -> bool:
        return await db.append_batch(
            "acme",
            expected_head=(expected.size, expected.hash),
            new_head=(chained.head.size, chained.head.hash),
            policy_version=policy,
            credentials=(list(keys), "2026-01-01T00:00:00.000000Z"),
            entry_rows=chained.entry_rows,
            inserts=chained.inserts,
        )

    assert await attempt(Head(head.size, "00" * 32), None) is False  # stale head: nothing written
    assert await attempt(Head(0, head.hash), None) is False
    assert await attempt(head, (7,)) is False  # no active policy, decision made under version 7
    await add_key(db, "key_revoked", revoked_at="2025-12-31T00:00:00.000000Z")
    await add_key(db, "key_expired", expires_at="2026-01-01T00:00:00.000000Z")
    await add_key(db, "key_live", expires_at="2026-01-01T00:00:00.000001Z")
    assert await attempt(head, (None,), ["key_live", "key_revoked"]) is False
    assert await attempt(head, (None,), ["key_expired"]) is False
    assert (await stored(db))[0].__len__() == 1
    assert await attempt(head, (None,), ["key_live"]) is True
    entries, agents = await stored(db)
    verify_chain(entries, tenant="acme")
    assert len(entries) == 3 and [a["name"] for a in agents] == ["seq 1", "seq 2"]
    assert await head_of(db) == chained.head
    assert await attempt(head, None) is False  # replaying the same batch does nothing


async def test_writer_keeps_one_chain_when_another_writer_moves_the_head(db):
    first, second = ChainWriter(db, "acme"), ChainWriter(db, "acme")  # as in two processes
    try:
        results = await asyncio.gather(
            *((first if n % 2 else second).append(agent_unit(n)) for n in range(200))
        )
    finally:
        await first.close()
        await second.close()
    entries, agents = await stored(db)
    verify_chain(entries, tenant="acme")
    assert len(entries) == 201 and len(agents) == 200
    assert sorted(seq for seqs in results for seq in seqs) == list(range(1, 201))
    for agent in agents:  # each row recorded the seq its own entry got
        seq = int(agent["name"].split()[1])
        assert f'"n":{agent["id"][1:]}'.encode() in entries[seq]


async def test_a_unit_under_a_stale_policy_is_refused_not_written(db):
    writer = ChainWriter(db, "acme")
    try:
        assert await writer.append(agent_unit(1, policy=None, expects=True)) == [1]
        with pytest.raises(Exception) as refused:
            await writer.append(agent_unit(2, policy=3, expects=True))
        assert getattr(refused.value, "code", None) == "policy_changed"
    finally:
        await writer.close()
    entries, agents = await stored(db)
    assert len(entries) == 2 and [a["id"] for a in agents] == ["a1"]


async def test_a_unit_asked_for_with_a_dead_key_is_refused_not_written(db):
    """A cached authentication must not outlive a revocation: the writer re-checks each
    unit's key at commit, on both paths (the fast path falls back to the locked one)."""
    await add_key(db, "key_live")
    await add_key(db, "key_revoked", revoked_at="2025-12-31T00:00:00.000000Z")
    await add_key(db, "key_expired", expires_at="2000-01-01T00:00:00.000000Z")
    writer = ChainWriter(db, "acme")
    units = [agent_unit(n) for n in range(4)]
    for unit, key in zip(units, ["key_live", "key_revoked", "key_expired", "key_unknown"], strict=True):
        unit.credential = key
    try:
        assert await writer.append(units[0]) == [1]  # the writer now knows the head: fast path next
        results = await asyncio.gather(*(writer.append(unit) for unit in units[1:]), return_exceptions=True)
    finally:
        await writer.close()
    assert [getattr(r, "code", r) for r in results] == ["invalid_token", "token_expired", "invalid_token"]
    entries, agents = await stored(db)
    assert len(entries) == 2 and [a["id"] for a in agents] == ["a0"]


async def test_a_revocation_refuses_later_units_of_the_same_batch(db):
    await add_key(db, "key_agent")

    async def revoke(conn) -> None:
        revoking.revokes = ["key_agent"]

    revoking = Unit(
        [EntryDraft("api_key.revoked", "test", {"id": "key_agent"})],
        lambda seqs: [("UPDATE api_keys SET revoked_at = 'now' WHERE id = ?", ("key_agent",))],
        prepare=revoke,
    )
    before, after = agent_unit(1), agent_unit(2)
    before.credential = after.credential = "key_agent"
    async with db.transaction() as conn:
        results, _ = await write_units(conn, "acme", [before, revoking, after], lock=db.for_update())
    assert results[0] == [1] and results[1] == [2]
    assert getattr(results[2], "code", None) == "invalid_token"


async def test_lookups_are_read_for_the_batch_at_once_unless_units_share_a_subject(db):
    """Units with a `Lookup` are read in one query per batch; two units about one subject are
    read one after the other, the second seeing the first's write; a failed check refuses its
    unit only."""
    async with db.transaction() as conn:
        for n in (1, 2, 3):
            await conn.execute("INSERT INTO agents (tenant_id, id, name, created_at) VALUES ('acme', ?, ?, 't')",
                               f"a{n}", f"agent {n}")  # fmt: skip
    reads: list[list[str]] = []

    async def read(conn, tenant: str, keys: list[str]) -> dict[str, dict]:
        reads.append(sorted(keys))
        sql = f"SELECT id, name FROM agents WHERE tenant_id = ? AND id IN ({', '.join('?' * len(keys))})"
        return {row["id"]: row for row in await conn.fetch(sql, tenant, *keys)}

    def renaming(agent: str, subject: str, mark: str) -> Unit:
        seen: dict = {}

        def check(row) -> None:
            if row is None:
                raise NotFound(f"no agent {agent}")
            seen["name"] = row["name"]

        return Unit(
            [EntryDraft("agent.renamed", "test", {"id": agent})],
            statements=lambda seqs: [
                (
                    "UPDATE agents SET name = ? WHERE tenant_id = 'acme' AND id = ?",
                    (f"{seen['name']}+{mark}", agent),
                )
            ],
            lookup=Lookup(read, agent, check, subject),
        )

    units = [renaming("a1", "s1", "A"), renaming("a2", "s2", "C"), renaming("a1", "s1", "B"),
             renaming("a3", "s3", "D"), renaming("a9", "s9", "X")]  # fmt: skip
    async with db.transaction() as conn:
        results, _ = await write_units(conn, "acme", units, lock=db.for_update())
    assert results[:4] == [[1], [2], [3], [4]]
    assert getattr(results[4], "code", None) == "not_found"
    assert reads == [["a2", "a3", "a9"], ["a1"], ["a1"]]  # ahead for the lone subjects, then alone
    _, agents = await stored(db)
    assert {row["id"]: row["name"] for row in agents} == {
        "a1": "agent 1+A+B", "a2": "agent 2+C", "a3": "agent 3+D"
    }  # fmt: skip
