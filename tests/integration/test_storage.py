"""Migrations, on both backends."""

from __future__ import annotations

import asyncio

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
