"""SQLite backend: the embedded default.

One writer connection (SQLite allows one writer at a time) serialized by a lock, and
one reader connection; WAL lets reads proceed while a write is in progress.
`synchronous=FULL` makes every commit durable before the gateway answers.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.storage.base import IntegrityError
from gateway.storage.schema import apply_migrations


class SQLiteConn:
    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        try:
            await self._conn.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        async with self._conn.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row is not None else None

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._conn.execute(sql, args) as cursor:
            rows = await cursor.fetchall()
        return [dict(row) for row in rows]


def _exclusive(path: Path) -> int:
    """Open `path` and wait for an exclusive flock on it; returns the descriptor holding it."""
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


class SQLiteDatabase:
    dialect = "sqlite"
    # Every SQLite call is a hop to aiosqlite's thread; the locked path is already cheap.
    supports_fast_append = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        # busy_timeout first: switching to WAL needs the lock another process may hold while
        # it migrates, and without a timeout that fails at once with "database is locked"
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def open(self) -> None:
        """Connect and migrate. Processes that open one file at the same moment take turns
        (an flock on `<file>.lock`): switching to WAL and migrating need the file to
        themselves, and SQLite's busy timeout does not cover every lock they take."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = await asyncio.to_thread(_exclusive, self.path.with_name(self.path.name + ".lock"))
        try:
            self._writer = await self._connect()
            await self._migrate()
            self._reader = await self._connect()
        except BaseException:
            await self.close()
            raise
        finally:
            os.close(lock)  # closing the descriptor releases the flock

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    def for_update(self) -> str:
        return ""  # the single writer connection already serializes writes

    async def append_batch(self, tenant: str, **_: object) -> bool:
        raise NotImplementedError("SQLite appends through the locked path")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SQLiteConn]:
        assert self._reader is not None, "database is not open"
        yield SQLiteConn(self._reader)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteConn]:
        assert self._writer is not None, "database is not open"
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteConn(self._writer)
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            await apply_migrations(conn, blob="BLOB")
