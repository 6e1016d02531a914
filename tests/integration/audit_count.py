"""Counting audit entries from outside the app under test, on both backends."""

from __future__ import annotations

from typing import Any


class AuditCount:
    """Counts every tenant's audit entries through a connection of its own (the app's pool lives
    on the app's event loop): every state change writes entries in the same commit."""

    def __init__(self, backend: Any) -> None:
        from gateway.storage import open_database

        self.db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)

    async def __call__(self) -> int:
        async with self.db.read() as conn:
            row = await conn.fetchrow("SELECT count(*) AS n FROM audit_entries")
        return int(row["n"])
