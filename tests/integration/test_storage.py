"""Migrations, on both backends."""

from __future__ import annotations

import asyncio

import pytest

from gateway.storage import open_database
from gateway.storage.schema import MIGRATIONS, apply_migrations


async def test_migrations_apply_once_even_when_processes_start_together(backend):
    databases = [
        open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema) for _ in range(4)
    ]
    await asyncio.gather(*(db.open() for db in databases))  # all migrate the same fresh database at once
    first = databases[0]
    try:
        async with first.read() as conn:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in rows] == [version for version, _ in MIGRATIONS]
        async with first.transaction() as conn:  # and again: nothing left to apply
            blob = "BYTEA" if first.dialect == "postgresql" else "BLOB"
            assert await apply_migrations(conn, blob=blob) == []
    finally:
        for db in databases:
            await db.close()


async def test_a_read_sees_what_committed_before_it_while_other_reads_run(backend):
    """Read-your-writes with reads of other tasks in flight: on SQLite they share one reader
    connection, and a statement held open across hops would lend its older snapshot."""
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            async with db.read() as conn:
                await conn.fetch("SELECT version FROM schema_migrations")
                await conn.fetchrow("SELECT version FROM schema_migrations ORDER BY version")

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    try:
        for i in range(300):
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", 10_000 + i, "now"
                )
            async with db.read() as conn:
                row = await conn.fetchrow(
                    "SELECT version FROM schema_migrations WHERE version = ?", 10_000 + i
                )
                rows = await conn.fetch("SELECT version FROM schema_migrations WHERE version = ?", 10_000 + i)
            assert row is not None and len(rows) == 1, f"insert {i} committed but a read after it missed it"
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await db.close()


async def test_the_postgresql_pool_holds_at_most_the_configured_connections(backend):
    """VERDICT_DATABASE_POOL_SIZE reaches the pool: with 3, a fourth concurrent read waits for one."""
    if not backend.url or not backend.url.startswith("postgresql"):
        pytest.skip("SQLite has one writer and one reader connection: nothing to size")
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema, pool_size=3)
    await db.open()
    try:
        held = asyncio.Event()
        entered = 0

        async def read() -> None:
            nonlocal entered
            async with db.read() as conn:
                entered += 1
                await conn.fetchrow("SELECT 1 AS one")
                await held.wait()

        tasks = [asyncio.create_task(read()) for _ in range(4)]
        while entered < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert entered == 3  # the fourth waits for a connection
        held.set()
        await asyncio.gather(*tasks)
        assert entered == 4
    finally:
        await db.close()
