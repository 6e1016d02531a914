"""PostgreSQL backend (asyncpg): for several gateway processes in front of one database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from gateway.storage.base import IntegrityError
from gateway.storage.schema import MIGRATIONS

_MIGRATION_LOCK = 0x5645524449435400  # "VERDICT\0": pg_advisory_xact_lock key


@lru_cache(maxsize=512)
def to_pg(sql: str) -> str:
    """Rewrite `?` placeholders to `$1, $2, …` (our SQL has no `?` inside literals)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: skip asyncpg's default `RESET ALL` round trip. The gateway sets no
    session state (search_path comes from server_settings at connect), and asyncpg still
    rolls back any transaction left open before a connection returns to the pool."""


class PostgresConn:
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        try:
            await self._conn.execute(to_pg(sql), *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(str(exc)) from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(to_pg(sql), rows)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(str(exc)) from exc

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._conn.fetchrow(to_pg(sql), *args)
        return dict(row) if row is not None else None

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._conn.fetch(to_pg(sql), *args)]


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 2, max_size: int = 10) -> None:
        self.dsn = dsn
        self.schema = schema
        self._min_size, self._max_size = min_size, max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        settings = {"search_path": self.schema} if self.schema else {}
        if self.schema:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except asyncpg.UniqueViolationError:
                pass  # created concurrently by another process
            finally:
                await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            server_settings=settings,
            reset=_keep_session,
        )
        await self._migrate()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def for_update(self) -> str:
        return " FOR UPDATE OF audit_heads"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresConn]:
        assert self._pool is not None, "database is not open"
        async with self._pool.acquire() as conn:
            yield PostgresConn(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConn]:
        assert self._pool is not None, "database is not open"
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresConn(conn)

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
            )
            done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    await conn.execute(statement.format(blob="BYTEA"))
                await conn.execute("INSERT INTO schema_migrations VALUES (?, now()::text)", version)
