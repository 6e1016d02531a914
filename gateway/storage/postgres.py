"""PostgreSQL backend (asyncpg): for several gateway processes in front of one database."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from gateway.errors import DatabaseUnavailable, StorageFull
from gateway.ratelimit import DEFAULT_PROPOSALS_PER_MINUTE, TENANT_DEFAULT
from gateway.storage.base import IntegrityError, StorageHealth
from gateway.storage.schema import COLUMN_TYPES, apply_migrations

log = logging.getLogger("verdict.storage")

# Failures of the connection, not of a statement: the database is unreachable right now.
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection closed mid-operation
    asyncpg.InterfaceError,  # the client's side of a broken connection ("connection is closed", …)
    asyncpg.InternalClientError,  # "cannot switch to state 15; another operation is in progress"
)
# The server is there but cannot do the work now; retrying later can succeed.
SERVER_UNAVAILABLE_ERRORS = (
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, out of memory, connections
    asyncpg.exceptions.PostgresSystemError,  # class 58: I/O error on the server
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: a standby after a failover
)
_MIGRATION_LOCK = 0x5645524449435400  # "VERDICT\0": pg_advisory_xact_lock key


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached or used right now (retryable), as
    opposed to a statement of ours it refused (a bug, or bad input). Client-side argument errors
    (asyncpg's DataError, a ValueError) are ours, not the database's."""
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return False
    return isinstance(exc, CONNECTION_ERRORS + SERVER_UNAVAILABLE_ERRORS)


def unavailable_error(exc: BaseException) -> DatabaseUnavailable:
    """The 503 to answer for an `is_unavailable` failure (the detail names its kind only)."""
    if isinstance(exc, asyncpg.exceptions.DiskFullError):
        return StorageFull("the database server's disk is full")
    return DatabaseUnavailable(f"the database is unreachable or unavailable: {type(exc).__name__}")


def _one_line_for_outages(record: logging.LogRecord) -> bool:
    """asyncpg's pool logs a traceback each time it fails to reconnect (every second of an
    outage); say it in one line instead, as the gateway does (`StorageHealth`)."""
    if record.exc_info and record.exc_info[1] is not None and is_unavailable(record.exc_info[1]):
        error = record.exc_info[1]
        record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
        record.args, record.exc_info, record.exc_text = None, None, None
    return True


logging.getLogger("asyncpg.pool").addFilter(_one_line_for_outages)


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


@lru_cache(maxsize=64)
def _append_many_sql(groups: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    """The one-statement append of one or several tenants' batches (`append_batches`): for
    each tenant, compare-and-set its head, and insert its entries and rows only if it moved.

    Data-modifying CTEs run in one statement, so in autocommit mode it is one atomic, durable
    transaction and one round trip. Each tenant is a row of `v`; its head moves only if it is
    still the one its batch was chained on and every condition holds: the active policy and
    configuration versions decided under, every credential live (neither revoked nor expired)
    at commit, no agent over its proposals per minute once the batch's are counted, and no
    idempotency key already recorded. A tenant refused writes nothing; the others commit.

    The heads are locked first, in one order (`COLLATE "C"`: byte order, the same in every
    process), so two such statements never wait on each other's heads; a head another
    transaction holds makes it wait, and READ COMMITTED then compares with the new version.
    The text depends on which tables the batches insert into, not on how many tenants it
    carries, so one prepared statement serves every group.
    """
    limit = (
        "COALESCE((SELECT l.propose_per_minute FROM rate_limits l WHERE l.tenant_id = r.tenant"
        " AND l.agent_id = r.agent), (SELECT l.propose_per_minute FROM rate_limits l"
        f" WHERE l.tenant_id = r.tenant AND l.agent_id = '{TENANT_DEFAULT}'), {int(DEFAULT_PROPOSALS_PER_MINUTE)})"
    )
    conditions = (
        " AND (NOT v.check_policy OR (SELECT t.active_policy_version FROM tenants t WHERE t.id = v.tenant)"
        " IS NOT DISTINCT FROM v.policy_version)"
        " AND (v.config_version IS NULL"
        " OR (SELECT t.config_version FROM tenants t WHERE t.id = v.tenant) = v.config_version)"
        " AND NOT EXISTS (SELECT 1 FROM unnest($14::text[], $15::text[]) AS c(tenant, id)"
        " JOIN api_keys k ON k.id = c.id WHERE c.tenant = v.tenant"
        " AND (k.revoked_at IS NOT NULL OR k.expires_at <= v.now))"
        " AND NOT EXISTS (SELECT 1 FROM r LEFT JOIN rate_windows w ON w.tenant_id = r.tenant"
        " AND w.agent_id = r.agent AND w.window_start >= v.rate_window"
        f" WHERE r.tenant = v.tenant AND COALESCE(w.proposals, 0) + r.n > {limit})"
        " AND NOT EXISTS (SELECT 1 FROM unnest($19::text[], $20::text[], $21::text[]) AS k(tenant, agent, key)"
        " JOIN idempotency_keys i ON i.tenant_id = k.tenant AND i.agent_id = k.agent"
        " AND i.idempotency_key = k.key WHERE k.tenant = v.tenant)"
    )
    parts = [
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],"
        " $6::boolean[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[]) AS v(tenant, new_size,"
        " new_head, old_size, old_head, check_policy, policy_version, config_version, now, rate_window))",
        "locked AS (SELECT tenant_id, size, head FROM audit_heads WHERE tenant_id = ANY($1::text[])"
        ' ORDER BY tenant_id COLLATE "C" FOR UPDATE)',
        "r AS (SELECT * FROM unnest($16::text[], $17::text[], $18::bigint[]) AS r(tenant, agent, n))",
        "head AS (UPDATE audit_heads h SET size = v.new_size, head = v.new_head FROM v, locked"
        " WHERE locked.tenant_id = v.tenant AND h.tenant_id = v.tenant AND h.size = v.old_size"
        f" AND h.head = v.old_head{conditions} RETURNING h.tenant_id)",
        "entries AS (INSERT INTO audit_entries (tenant_id, seq, entry) SELECT t, s, e"
        " FROM unnest($11::text[], $12::bigint[], $13::bytea[]) AS x(t, s, e)"
        " WHERE x.t IN (SELECT tenant_id FROM head))",
        "rate AS (INSERT INTO rate_windows AS w (tenant_id, agent_id, window_start, proposals)"
        " SELECT r.tenant, r.agent, v.rate_window, r.n FROM r JOIN v ON v.tenant = r.tenant"
        " WHERE r.tenant IN (SELECT tenant_id FROM head) ON CONFLICT (tenant_id, agent_id) DO UPDATE SET"
        " proposals = CASE WHEN w.window_start >= excluded.window_start"
        " THEN w.proposals + excluded.proposals ELSE excluded.proposals END,"
        " window_start = GREATEST(w.window_start, excluded.window_start))",
    ]
    n = 22
    for index, (table, columns) in enumerate(groups):
        arrays = [
            f"${n + i}::{COLUMN_TYPES.get((table, column), 'text')}[]" for i, column in enumerate(columns)
        ]
        n += len(columns)
        names = ", ".join(columns)
        parts.append(
            f"rows{index} AS (INSERT INTO {table} ({names}) SELECT * FROM unnest({', '.join(arrays)})"
            f" AS t({names}) WHERE t.tenant_id IN (SELECT tenant_id FROM head))"
        )
    # Each tenant's head as locked (the newest, READ COMMITTED), and whether it moved: a writer
    # whose head was stale retries on the current one without reading it again.
    return (
        ", ".join(parts) + " SELECT l.tenant_id, l.size, l.head, h.tenant_id IS NOT NULL AS applied"
        " FROM locked l LEFT JOIN head h ON h.tenant_id = l.tenant_id"
    )


def _append_many_statement(batches: list[tuple[str, dict[str, Any]]]) -> tuple[str, list[Any]]:
    """The SQL and arguments of `_append_many_sql` for `batches` (arguments as `append_batch`
    takes them). Raises ValueError for a tenant twice, or a row without a `tenant_id` column
    to tell whose it is (every table with tenant data has one: migration 23)."""
    tenants = [tenant for tenant, _ in batches]
    if len(set(tenants)) != len(tenants):
        raise ValueError("a tenant's batches must be appended one after the other")
    heads: list[list[Any]] = [[] for _ in range(10)]
    rows: list[list[Any]] = [[] for _ in range(11)]  # entries (3), credentials (2), rate (3), keys (3)
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
    for tenant, arguments in batches:
        policy = arguments["policy_version"]
        ids, now = arguments["credentials"]
        window, agents, counts = arguments.get("rate", (0, [], []))
        key_agents, keys = arguments.get("idempotency", ([], []))
        values = (
            tenant, *arguments["new_head"], *arguments["expected_head"], policy is not None,
            policy[0] if policy else None, arguments.get("config_version"), now, window,
        )  # fmt: skip
        for column, value in zip(heads, values, strict=True):
            column.append(value)
        for _, seq, entry in arguments["entry_rows"]:
            rows[0].append(tenant), rows[1].append(seq), rows[2].append(entry)
        rows[3].extend([tenant] * len(ids)), rows[4].extend(ids)
        rows[5].extend([tenant] * len(agents)), rows[6].extend(agents), rows[7].extend(counts)
        rows[8].extend([tenant] * len(keys)), rows[9].extend(key_agents), rows[10].extend(keys)
        for insert in arguments["inserts"]:
            if "tenant_id" not in insert.columns:
                raise ValueError(f"a row of {insert.table} without tenant_id cannot be appended")
            groups.setdefault((insert.table, insert.columns), []).append(insert.values)
    shapes = tuple(sorted(groups))
    args: list[Any] = [*heads, *rows]
    for shape in shapes:
        args.extend(list(column) for column in zip(*groups[shape], strict=True))
    return _append_many_sql(shapes), args


def _answer(row: Any) -> bool | tuple[int, str]:
    """One tenant's answer from `_append_many_sql`'s rows (see `append_batches`)."""
    if row is None:  # no such tenant
        return False
    return True if row[3] else (int(row[1]), row[2])


class PostgresDatabase:
    dialect = "postgresql"
    supports_fast_append = True

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 2, max_size: int = 10) -> None:
        self.dsn = dsn
        self.schema = schema
        self._min_size, self._max_size = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._appends: asyncpg.Pool | None = None  # the commit group's (`append_batches`)
        self.health = StorageHealth(log)

    async def open(self) -> None:
        # application_name lets operators (and the outage test) find the gateway's sessions
        settings = {"application_name": f"verdict:{self.schema}" if self.schema else "verdict"}
        if self.schema:
            settings["search_path"] = self.schema
        if self.schema:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except asyncpg.UniqueViolationError:
                pass  # created concurrently by another process
            finally:
                await conn.close()
        pool = functools.partial(
            asyncpg.create_pool,
            self.dsn,
            reset=_keep_session,
            timeout=5,  # connecting: fail fast (503) instead of hanging requests for a minute
        )
        self._pool = await pool(min_size=self._min_size, max_size=self._max_size, server_settings=settings)
        # The commit group has one append under way at a time, on a connection of its own (it
        # never waits behind reads). Its statement's generic plan serves any number of tenants;
        # left to choose, PostgreSQL plans it anew for every call, which doubles its cost.
        generic = settings | {"plan_cache_mode": "force_generic_plan"}
        self._appends = await pool(min_size=1, max_size=2, server_settings=generic)
        await self._migrate()

    async def close(self) -> None:
        for pool in (self._appends, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._appends = None

    @property
    def pool(self) -> asyncpg.Pool | None:
        """The connection pool, for its gauges (gateway.metrics); None while closed."""
        return self._pool

    def for_update(self) -> str:
        return " FOR UPDATE OF audit_heads"

    async def append_batch(self, tenant: str, **arguments: Any) -> bool:
        return (await self.append_batches([(tenant, arguments)]))[0] is True

    async def append_batches(self, batches: list[tuple[str, dict[str, Any]]]) -> list[bool | tuple[int, str]]:
        sql, args = _append_many_statement(batches)  # one statement: one round trip, one commit
        async with self._connection(writes=True, pool=self._appends) as conn:
            rows = {row[0]: row for row in await conn.fetch(sql, *args)}
        return [_answer(rows.get(tenant)) for tenant, _ in batches]

    async def append_batch_locked(
        self, tenant: str, build: Callable[[int, str], dict[str, Any]]
    ) -> bool | tuple[int, str]:
        """`append_batch(tenant, **build(size, hash))` on the tenant's current head, read and
        locked first in the same transaction: a head another process moved cannot refuse it.
        Answers as `append_batches` does for one batch."""
        async with self._connection(writes=True, transaction=True) as conn:
            row = await conn.fetchrow(
                "SELECT size, head FROM audit_heads WHERE tenant_id = $1 FOR UPDATE", tenant
            )
            if row is None:
                return False
            sql, args = _append_many_statement([(tenant, build(int(row[0]), row[1]))])
            return _answer((await conn.fetch(sql, *args))[0])

    @asynccontextmanager
    async def _connection(
        self, *, writes: bool, transaction: bool = False, pool: asyncpg.Pool | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection. A failure to reach or use the database raises DatabaseUnavailable
        (StorageFull for a full disk), and the connection it broke is terminated, never handed
        out again: asyncpg would otherwise try to reuse it (or roll it back) mid-operation."""
        pool = pool or self._pool
        assert pool is not None, "database is not open"
        try:
            async with pool.acquire() as conn:
                try:
                    if transaction:
                        async with conn.transaction():
                            yield conn
                    else:
                        yield conn
                except BaseException as exc:
                    if is_unavailable(exc) or isinstance(exc, asyncio.CancelledError):
                        # its protocol state is unknown: discard it (unless asyncpg already has,
                        # in which case the proxy is detached and says so)
                        with contextlib.suppress(asyncpg.InterfaceError):
                            conn.terminate()
                    raise
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            error = unavailable_error(exc)
            self.health.failed(error, exc)
            raise error from exc
        if writes:
            self.health.succeeded()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresConn]:
        async with self._connection(writes=False) as conn:
            yield PostgresConn(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConn]:
        async with self._connection(writes=True, transaction=True) as conn:
            yield PostgresConn(conn)

    async def ping(self) -> None:
        """Raises DatabaseUnavailable unless the database answers a query now."""
        async with self.read() as conn:
            await conn.fetchrow("SELECT 1 AS ok")

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            # processes that start together take turns; each migration applies once
            await conn.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK)
            await apply_migrations(conn, blob="BYTEA")
