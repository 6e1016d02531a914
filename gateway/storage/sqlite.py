"""SQLite backend: the embedded default.

One writer connection (SQLite allows one writer at a time) serialized by a lock, and
one reader connection; WAL lets reads proceed while a write is in progress.
`synchronous=FULL` makes every commit durable before the gateway answers.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.errors import StorageFull, StorageUnavailable
from gateway.storage.base import IntegrityError, StorageHealth
from gateway.storage.schema import apply_migrations

log = logging.getLogger("verdict.storage")

# Primary result codes (https://sqlite.org/rescode.html) of failures outside the gateway's
# control: the disk, the file system, another process holding the file. Retrying can succeed.
SQLITE_FULL = 13
_STORAGE_FAILURES = {
    5: "the database file is locked (SQLITE_BUSY)",
    6: "a table is locked (SQLITE_LOCKED)",
    8: "the database file is read-only (SQLITE_READONLY)",
    10: "a disk I/O error (SQLITE_IOERR)",
    11: "the database file is damaged (SQLITE_CORRUPT)",
    13: "the disk or the database's size limit is full (SQLITE_FULL)",
    14: "the database file cannot be opened (SQLITE_CANTOPEN)",
    15: "a file-locking protocol error (SQLITE_PROTOCOL)",
    22: "the file is too large for this file system (SQLITE_NOLFS)",
    26: "the database file is not a database (SQLITE_NOTADB)",
}


def storage_error(exc: sqlite3.Error) -> StorageUnavailable | None:
    """The 503 for a failure of the disk or the file (StorageFull for SQLITE_FULL), or None when
    `exc` is about a statement of ours (a bug or bad input; it stays a 500)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF  # extended codes keep the primary one in the low byte
    if primary == SQLITE_FULL:
        return StorageFull("the storage is full: " + _STORAGE_FAILURES[primary])
    if primary in _STORAGE_FAILURES:
        return StorageUnavailable("the storage failed: " + _STORAGE_FAILURES[primary])
    return None


class SQLiteConn:
    """Raises IntegrityError for a violated constraint, StorageUnavailable (503; StorageFull
    for a full disk) for a failure of the disk or the file."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, health: StorageHealth) -> None:
        self._conn = conn
        self._health = health

    def _failed(self, exc: sqlite3.Error) -> Exception:
        error = storage_error(exc)
        if error is None:
            return exc
        self._health.failed(error, exc)
        return error

    async def execute(self, sql: str, *args: Any) -> None:
        try:
            await self._conn.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    # A read runs whole in one hop to aiosqlite's thread: a statement left open between hops
    # (execute, then fetch) would hold its snapshot, and every other read on the shared reader
    # connection in between would share it and miss a write committed meanwhile.
    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        try:
            row = await self._conn._execute(_fetch_one, self._conn._conn, sql, args)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return dict(row) if row is not None else None

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        try:
            rows = await self._conn.execute_fetchall(sql, args)
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return [dict(row) for row in rows]


def _fetch_one(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> sqlite3.Row | None:
    cursor = conn.execute(sql, args)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


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
        self.health = StorageHealth(log)

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
        yield SQLiteConn(self._reader, self.health)

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.fetchrow("SELECT 1 AS ok")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLiteConn]:
        """Raises StorageUnavailable (StorageFull) when the disk or the file fails; the
        transaction is then rolled back, and the next one starts clean."""
        assert self._writer is not None, "database is not open"
        async with self._write_lock:
            conn = SQLiteConn(self._writer, self.health)
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await self._rollback()
                raise
            try:
                await conn.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed (SQLITE_FULL, SQLITE_IOERR) leaves the transaction open:
                # without a rollback every later BEGIN would fail, even once the disk has room.
                await self._rollback()
                raise
        self.health.succeeded()

    async def _rollback(self) -> None:
        """Roll back the writer's open transaction, if SQLite has not already (it rolls back by
        itself after some I/O errors); a failed rollback is logged, not raised over the cause."""
        assert self._writer is not None
        if not self._writer.in_transaction:
            return
        try:
            await self._writer.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("rollback failed: %s: %s", type(exc).__name__, exc)

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            await apply_migrations(conn, blob="BLOB")
