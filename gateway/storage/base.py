"""The storage interface shared by the SQLite and PostgreSQL backends.

SQL is written once, with `?` placeholders; the PostgreSQL backend rewrites them to
`$1, $2, …`. Rows come back as plain dicts.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from gateway.errors import Unavailable
from gateway.health import HealthProblem, OncePerInterval
from gateway.metrics import DATABASE_ERRORS

PROBE_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Insert:
    """One row to insert; `columns` are constants of our schema, `values` are parameters."""

    table: str
    columns: tuple[str, ...]
    values: tuple[Any, ...]

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        return _insert_sql(self.table, self.columns), self.values


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


class StorageHealth:
    """What a backend last saw go wrong: set by a failure to reach or write the database,
    cleared by the next committed write. `/health` reports it (gateway.app) and, while it is
    set, probes with a write of its own so that it notices the recovery even when no client
    writes. Each distinct failure is logged once per interval, not once per request."""

    def __init__(self, logger: logging.Logger) -> None:
        self.failure: Unavailable | None = None
        self._log = OncePerInterval(logger)

    def failed(self, error: Unavailable, cause: BaseException) -> None:
        self.failure = error
        DATABASE_ERRORS.labels(error.code).inc()
        self._log.log(
            logging.ERROR,
            f"storage failure, answering 503 {error.code}: {type(cause).__name__}: {cause}",
        )

    def succeeded(self) -> None:
        if self.failure is not None:
            self._log.logger.warning("storage recovered after %s", self.failure.code)
            self.failure = None


async def write_probe(db: Database) -> None:
    """Commit one small write (this host's row in `storage_probes`). Raises Unavailable."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO storage_probes (host, written_at) VALUES (?, ?)"
            " ON CONFLICT (host) DO UPDATE SET written_at = excluded.written_at",
            socket.gethostname()[:255],
            str(time.time()),
        )


class DatabaseCheck:
    """The `/health` check of a database: a query, or, while a failure is known, a write (at
    most one a second however often `/health` is asked), so that the recovery is noticed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._last_probe = float("-inf")

    async def __call__(self) -> HealthProblem | None:
        failure = self.db.health.failure
        try:
            if failure is None:
                await self.db.ping()
                return None
            if time.monotonic() - self._last_probe < PROBE_INTERVAL_SECONDS:
                return HealthProblem("database", failure.code, failure.detail)
            self._last_probe = time.monotonic()
            await write_probe(self.db)
        except Unavailable as exc:
            return HealthProblem("database", exc.code, exc.detail)
        return None


class Conn(Protocol):
    """A connection for one unit of work.

    Inside `Database.transaction()` every call belongs to one transaction that commits
    when the block exits normally (durably: SQLite synchronous=FULL, PostgreSQL default
    fsync) and rolls back when it raises. Not safe for concurrent use by several tasks.
    """

    dialect: str

    async def execute(self, sql: str, *args: Any) -> None: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None: ...
    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...


class Database(Protocol):
    """A storage backend. Safe for concurrent use by many tasks of one event loop."""

    dialect: str

    health: StorageHealth

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """A query that needs no transaction. Raises Unavailable (503) when it fails."""
        ...

    def read(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for reads that need no transaction."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Conn]:
        """A write transaction (SQLite: BEGIN IMMEDIATE on the single writer)."""
        ...

    def for_update(self) -> str:
        """The row-lock clause for the chain head (`FOR UPDATE` on PostgreSQL)."""
        ...

    supports_fast_append: bool

    async def append_batch(
        self,
        tenant: str,
        *,
        expected_head: tuple[int, str],
        new_head: tuple[int, str],
        policy_version: tuple[int | None] | None,
        credentials: tuple[list[str], str],
        entry_rows: list[tuple[str, int, bytes]],
        inserts: list[Insert],
        rate: tuple[int, list[str], list[int]] = (0, [], []),
        idempotency: tuple[list[str], list[str]] = ([], []),
        config_version: int | None = None,
    ) -> bool:
        """Atomically: if the tenant's head is `expected_head` (and, when given, its active
        policy version is `policy_version[0]` and its configuration version `config_version`, and none of the API keys `credentials[0]` is
        revoked or expired at time `credentials[1]`, and no agent `rate[1][i]` goes over its
        proposals per minute by adding `rate[2][i]` in window `rate[0]`, and no idempotency key
        `idempotency[1][i]` of agent `idempotency[0][i]` has a record), move it to `new_head`,
        insert the entries and rows and count the proposals. Returns False, having written
        nothing, when a condition does not hold. Durable when it returns True."""
        ...

    async def append_batches(self, batches: list[tuple[str, dict[str, Any]]]) -> list[bool | tuple[int, str]]:
        """`append_batch(tenant, **arguments)` for each (tenant, arguments), all in ONE
        transaction (one commit for several tenants' chains), in the order given. Returns each
        one's answer: True, or for a batch not applied False or, when known, the tenant's
        current head (size, hash) (the batch's may have been stale); raises, having written
        nothing, when any statement fails."""
        ...

    async def append_batch_locked(
        self, tenant: str, build: Callable[[int, str], dict[str, Any]]
    ) -> bool | tuple[int, str]:
        """In one transaction: lock the tenant's head, then `append_batch(tenant,
        **build(size, hash))` on it. Answers as `append_batches` does for one batch."""
        ...


class IntegrityError(Exception):
    """A unique or foreign-key constraint was violated (backend-neutral)."""


async def aiter_rows(rows: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for row in rows:
        yield row
