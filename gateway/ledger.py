"""Appending to tenants' audit logs, in the same transaction as the state change.

Every state change is a `Unit`: the audit entries it appends and the rows it writes.
`Ledger.append` hands a unit to the tenant's `ChainWriter`, a task that takes every unit
waiting for that tenant and writes them in ONE transaction (group commit), assigning
`seq` and `prev`; only after the commit does `append` return, so a response is never
sent for anything that is not durable (DESIGN invariants 2 and 3).

Two ways to write a batch, both atomic:
- the locked path (`write_units`): lock the tenant's chain head row, read it, build the
  entries, write, commit. Any unit may run reads first (`prepare`), or name a read that the
  batch makes for all such units in one query (`lookup`).
- the PostgreSQL fast path (`Database.append_batch`): for batches of plain inserts, one
  statement (several tenants' in one transaction: `CommitGroup`) that moves the head from the value this writer last wrote (compare-and-set)
  and inserts entries and rows only if that succeeded. When another process moved the
  head meanwhile, nothing is written and the batch takes the locked path.
Either way the head row serializes writers, so several processes keep one chain.

The same serialization makes two per-unit checks hold across processes: an agent's
proposals per minute (`Unit.rate_agent`, counted in `rate_windows`) and idempotency keys
(`Unit.idempotency`): a unit whose key already has a record is not written; it gets the
record's answer (`Unit.replay`) or, for another request, 409 `idempotency_conflict`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from audit.entry import GENESIS_PREV, Unplaced, leaf_hash, unplaced_entry
from gateway import metrics, telemetry
from gateway.auth import credential_error
from gateway.clock import rfc3339, utc_now
from gateway.errors import AppError, Conflict, NotFound, Overloaded, Unavailable
from gateway.ratelimit import (
    DEFAULT_PROPOSALS_PER_MINUTE,
    TENANT_DEFAULT,
    ProposalsLimited,
    proposals_limited,
    window_of,
)
from gateway.storage import Conn, Database, Insert

# (tenant, new log size, entries as stored, the new head's hex leaf hash)
OnCommit = Callable[[str, int, list[bytes], str], None]
log = logging.getLogger("verdict.ledger")

Statement = tuple[str, tuple[Any, ...]]
MAX_BATCH = 512
# Units waiting for one tenant's writer in this process: past it, new proposals are refused
# (503 `overloaded`, nothing decided or written; `verify_room`) rather than queued for longer
# than a client waits. A few group commits' worth: at ~2,500 units/s, under a second of waiting.
# Background work (expiries, executions, deliveries) is never refused: it must be recorded.
MAX_PENDING_UNITS = 2048
FAST_ATTEMPTS = 3
# An idempotency key's record answers repeats for at least this long; after it, the key is new.
IDEMPOTENCY_KEEP_SECONDS = 24 * 3600


@dataclass(slots=True)
class IdempotencyClaim:
    """A unit made for a request with an `Idempotency-Key`: at most one unit per agent and key
    is ever written. `response` is the answer to store; the unit's `inserts` set it (it may
    name the seqs) and insert the `idempotency_keys` row."""

    agent_id: str
    key: str
    request_hash: str
    response: str | None = None


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


@dataclass(slots=True)
class EntryDraft:
    """An entry before the chain gives it `seq`, `prev` and `time`."""

    type: str
    actor: str
    data: dict[str, Any]
    action_id: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """A read a unit needs under the chain lock, made for all such units of a batch at once.

    `read(conn, tenant, keys)` returns {key: row} for the keys it finds (one query for any
    number of keys); `check(row or None)` then runs for the unit: it may raise an `AppError` to
    refuse it, and keeps what the unit's `statements` need. `subject` names what the unit
    writes (its action): the batch reads ahead only for units whose subject no other unit of the
    batch shares, and writes their statements grouped by SQL (one `executemany` each), so no
    read misses an earlier unit's write and no reordered write meets another unit's row. A
    unit that shares its subject is read alone, in order, as a `prepare` would be.
    """

    read: Callable[[Conn, str, list[Any]], Awaitable[dict[Any, dict[str, Any]]]]
    key: Any
    check: Callable[[dict[str, Any] | None], None]
    subject: str


@dataclass(slots=True, eq=False)
class Unit:
    """One state change and its audit entries.

    `prepare` (optional) runs first inside the transaction; it may read and may raise an
    `AppError` to refuse the unit, but must not write. `inserts` and `statements` receive
    the seqs assigned to the unit's entries and return the writes; a unit with only
    `inserts` can take the fast path.
    """

    entries: list[EntryDraft]
    statements: Callable[[list[int]], list[Statement]] | None = None
    inserts: Callable[[list[int]], list[Insert]] | None = None
    prepare: Callable[[Conn], Awaitable[None]] | None = None
    lookup: Lookup | None = None  # instead of `prepare`: a read the batch can make for many units
    # A decision made under a policy version commits only if that version is still the
    # active one (DESIGN invariant 6): checked under the chain head lock, so no race.
    expects_policy: bool = False
    policy_version: int | None = None
    # Set (by `prepare` or the caller) when this unit makes a version the active one.
    activates_policy: int | None = None
    # Likewise for the tenant's configuration that decisions read besides the policy (agent
    # scopes, the time zone): a unit decided under `config_version` commits only if it is still
    # the tenant's; a unit with `bumps_config` changes it (later units of its batch then fail).
    config_version: int | None = None
    bumps_config: bool = False
    # The API key of whoever asked for this unit. The unit commits only if that key is
    # neither revoked nor expired at commit time, checked under the chain head lock (or in
    # the fast path's compare-and-set), so no cached authentication outlives a revocation.
    credential: str | None = None
    # Set (by `prepare`) to the keys this unit revokes: later units of the same batch that
    # were asked for with one of them are refused.
    revokes: list[str] = field(default_factory=list)
    # The agent whose proposals per minute this unit spends; refused with 429 when spent.
    rate_agent: str | None = None
    idempotency: IdempotencyClaim | None = None
    # Set by the writer, instead of writing, when `idempotency`'s key already has a record of
    # the same request: the stored answer (the unit's result is then an empty list of seqs).
    replay: str | None = None
    future: asyncio.Future[list[int]] | None = field(default=None, repr=False)
    # The span of the request waiting for this unit, which its batch's span links to (traces on)
    trace_link: Any = field(default=None, repr=False)

    @property
    def plain(self) -> bool:
        return (
            self.prepare is None
            and self.lookup is None
            and self.statements is None
            and self.activates_policy is None
            and not self.bumps_config
        )


class PolicyVersionChanged(AppError):
    """The tenant's active policy changed between the decision and its commit; decide again."""

    status, code, title = 409, "policy_changed", "The active policy changed"

    def __init__(self, active: int | None) -> None:
        super().__init__(f"the active policy is now version {active}")
        self.active = active


class ConfigChanged(AppError):
    """An agent scope or the tenant's time zone changed between the decision and its commit;
    decide again with the new configuration."""

    status, code, title = 409, "config_changed", "The tenant's configuration changed"

    def __init__(self, version: int) -> None:
        super().__init__(f"the tenant's configuration is now version {version}")
        self.version = version


@dataclass(slots=True)
class Head:
    """The chain's size and the hex leaf hash of its last entry."""

    size: int
    hash: str


@dataclass(slots=True)
class Chained:
    """A batch turned into chain entries: what to write and what each unit gets back."""

    entry_rows: list[tuple[str, int, bytes]]
    inserts: list[Insert]
    seqs: list[list[int]]
    head: Head


def unplace_units(tenant: str, units: list[Unit], time: str) -> list[list[Unplaced]]:
    """Each unit's entries encoded but for their place in the chain (`chain_units`)."""
    return [
        [
            unplaced_entry(
                tenant=tenant, type=d.type, time=time, action_id=d.action_id, actor=d.actor, data=d.data
            )
            for d in unit.entries
        ]
        for unit in units
    ]


def chain_units(
    tenant: str, units: list[Unit], start: Head, time: str, unplaced: list[list[Unplaced]] | None = None
) -> Chained:
    """Assign seqs and prev links to the plain units' entries, in order. A batch chained again
    on another head passes its `unplace_units` again: only the places change."""
    size, prev = start.size, start.hash
    entry_rows: list[tuple[str, int, bytes]] = []
    inserts: list[Insert] = []
    all_seqs: list[list[int]] = []
    for unit, entries in zip(units, unplaced or unplace_units(tenant, units, time), strict=True):
        seqs = []
        for entry in entries:
            raw = entry.place(size, prev)
            entry_rows.append((tenant, size, raw))
            seqs.append(size)
            prev = leaf_hash(raw).hex()
            size += 1
        if unit.inserts is not None:
            inserts.extend(unit.inserts(seqs))
        all_seqs.append(seqs)
    return Chained(entry_rows, inserts, all_seqs, Head(size, prev))


class _Writes:
    """The statements of a batch, sent with as few round trips as their order allows: runs of
    one SQL text in order (`add`), and the writes of read-ahead units grouped by SQL text
    (`add_grouped`, see `Lookup`), all sent by `flush`."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.runs: list[tuple[str, list[tuple[Any, ...]]]] = []
        self.grouped: dict[str, list[tuple[Any, ...]]] = {}

    def add(self, sql: str, args: tuple[Any, ...]) -> None:
        if self.runs and self.runs[-1][0] == sql:
            self.runs[-1][1].append(args)
        else:
            self.runs.append((sql, [args]))

    def add_grouped(self, sql: str, args: tuple[Any, ...]) -> None:
        self.grouped.setdefault(sql, []).append(args)

    async def flush(self) -> None:
        pending, self.runs = [*self.runs, *self.grouped.items()], []
        self.grouped = {}
        for sql, rows in pending:
            if len(rows) == 1:
                await self.conn.execute(sql, *rows[0])
            else:
                await self.conn.executemany(sql, rows)


async def read_ahead(conn: Conn, tenant: str, units: list[Unit]) -> dict[int, dict[str, Any] | None]:
    """The rows of the units' lookups, one query per kind, for the units whose subject no other
    unit of the batch shares (see `Lookup`): id(unit) -> its row (None when absent)."""
    subjects = Counter(
        subject
        for unit in units
        for subject in (
            {unit.lookup.subject} if unit.lookup is not None else {e.action_id for e in unit.entries}
        )
        if subject is not None
    )
    kinds: dict[Any, list[Unit]] = {}
    for unit in units:
        if unit.lookup is not None and subjects[unit.lookup.subject] == 1:
            kinds.setdefault(unit.lookup.read, []).append(unit)
    found: dict[int, dict[str, Any] | None] = {}
    for read, members in kinds.items():
        rows = await read(conn, tenant, [unit.lookup.key for unit in members if unit.lookup is not None])
        for unit in members:
            if unit.lookup is not None:
                found[id(unit)] = rows.get(unit.lookup.key)
    return found


async def _check_unit(conn: Conn, tenant: str, unit: Unit, ahead: dict[int, Any], writes: _Writes) -> None:
    """Run the unit's read and check (`lookup`, else `prepare`); raises the AppError refusing it."""
    lookup = unit.lookup
    if lookup is not None:
        if id(unit) in ahead:
            row = ahead[id(unit)]
        else:
            await writes.flush()  # read alone, after what earlier units wrote
            row = (await lookup.read(conn, tenant, [lookup.key])).get(lookup.key)
        lookup.check(row)
    elif unit.prepare is not None:
        await writes.flush()  # a prepare may read what earlier units wrote
        await unit.prepare(conn)


async def write_units(
    conn: Conn, tenant: str, units: list[Unit], *, lock: str
) -> tuple[list[list[int] | AppError], Head]:
    """Write units into the tenant's chain inside an open transaction (the locked path).

    Returns, per unit, the seqs of its entries or the `AppError` that refused it, and the
    new head. Raises NotFound when the tenant has no chain; database errors propagate
    (the caller rolls back).
    """
    head = await conn.fetchrow(
        "SELECT audit_heads.size, audit_heads.head, tenants.active_policy_version, tenants.config_version"
        " FROM audit_heads"
        f" JOIN tenants ON tenants.id = audit_heads.tenant_id WHERE audit_heads.tenant_id = ?{lock}",
        tenant,
    )
    if head is None:
        raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")
    current, active_policy = Head(int(head["size"]), head["head"]), head["active_policy_version"]
    config_version = int(head["config_version"])
    moment = utc_now()
    time, unix_time = rfc3339(moment), moment.timestamp()
    window = window_of(unix_time)
    dead = await dead_credentials(conn, units, time)
    budgets = await rate_budgets(conn, tenant, units, window)
    claimed, stale = await idempotency_records(conn, tenant, units, unix_time)
    ahead = await read_ahead(conn, tenant, units)
    entry_rows: list[tuple[str, int, bytes]] = []
    results: list[list[int] | AppError] = []
    writes = _Writes(conn)
    for unit in units:
        if unit.credential is not None and unit.credential in dead:
            results.append(credential_error(dead[unit.credential]))
            continue
        claim = unit.idempotency
        if claim is not None and (claim.agent_id, claim.key) in claimed:
            request_hash, response = claimed[(claim.agent_id, claim.key)]
            if request_hash != claim.request_hash:
                results.append(_conflict(claim))
            else:
                unit.replay = response
                results.append([])
            continue
        try:
            await _check_unit(conn, tenant, unit, ahead, writes)
        except AppError as exc:
            results.append(exc)
            continue
        if unit.expects_policy and unit.policy_version != active_policy:
            results.append(PolicyVersionChanged(active_policy))
            continue
        if unit.config_version is not None and unit.config_version != config_version:
            results.append(ConfigChanged(config_version))
            continue
        if unit.rate_agent is not None:
            budget = budgets[unit.rate_agent]
            if budget[1] >= budget[0]:
                results.append(proposals_limited(unit.rate_agent, budget[0], unix_time, window))
                continue
            budget[1] += 1
        if unit.activates_policy is not None:
            active_policy = unit.activates_policy
        if unit.bumps_config:
            config_version += 1
        dead.update(dict.fromkeys(unit.revokes, "invalid_token"))
        chained = chain_units(tenant, [unit], current, time)
        current = chained.head
        entry_rows.extend(chained.entry_rows)
        add = writes.add_grouped if id(unit) in ahead else writes.add
        if claim is not None:
            claimed[(claim.agent_id, claim.key)] = (claim.request_hash, claim.response or "")
            if (claim.agent_id, claim.key) in stale:  # an expired record: the key is new again
                add(_DELETE_IDEMPOTENCY, (tenant, claim.agent_id, claim.key))
        for sql, args in (
            *(insert.statement() for insert in chained.inserts),
            *(unit.statements(chained.seqs[0]) if unit.statements is not None else ()),
        ):
            add(sql, args)
        results.append(chained.seqs[0])
    await writes.flush()
    spent = [(tenant, agent, window, used) for agent, (_, used, start) in budgets.items() if used > start]
    if spent:
        await conn.executemany(_UPSERT_RATE_WINDOW, spent)
    if entry_rows:
        await conn.executemany(
            "INSERT INTO audit_entries (tenant_id, seq, entry) VALUES (?, ?, ?)", entry_rows
        )
        await conn.execute(
            "UPDATE audit_heads SET size = ?, head = ? WHERE tenant_id = ?",
            current.size,
            current.hash,
            tenant,
        )
    return results, current


_DELETE_IDEMPOTENCY = (
    "DELETE FROM idempotency_keys WHERE tenant_id = ? AND agent_id = ? AND idempotency_key = ?"
)
_UPSERT_RATE_WINDOW = (
    "INSERT INTO rate_windows (tenant_id, agent_id, window_start, proposals) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (tenant_id, agent_id) DO UPDATE SET window_start = excluded.window_start,"
    " proposals = excluded.proposals"
)


def _conflict(claim: IdempotencyClaim) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"idempotency key {claim.key!r} was already used for a different request by this agent"
    )


def _placeholders(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


async def rate_budgets(conn: Conn, tenant: str, units: list[Unit], window: int) -> dict[str, list[int]]:
    """Per agent that `units` spend proposals of: [its limit, proposals used in `window`,
    the same as read]. The limit is the agent's, else the tenant's, else the default."""
    agents = sorted({unit.rate_agent for unit in units if unit.rate_agent is not None})
    if not agents:
        return {}
    limits = {
        row["agent_id"]: int(row["propose_per_minute"])
        for row in await conn.fetch(
            "SELECT agent_id, propose_per_minute FROM rate_limits WHERE tenant_id = ?"
            f" AND agent_id IN ({_placeholders(agents)}, ?)",
            tenant,
            *agents,
            TENANT_DEFAULT,
        )
    }
    used = {
        row["agent_id"]: int(row["proposals"])
        for row in await conn.fetch(
            "SELECT agent_id, proposals FROM rate_windows WHERE tenant_id = ? AND window_start >= ?"
            f" AND agent_id IN ({_placeholders(agents)})",
            tenant,
            window,
            *agents,
        )
    }
    default = limits.get(TENANT_DEFAULT, DEFAULT_PROPOSALS_PER_MINUTE)
    return {agent: [limits.get(agent, default), used.get(agent, 0), used.get(agent, 0)] for agent in agents}


async def idempotency_records(
    conn: Conn, tenant: str, units: list[Unit], unix_time: float
) -> tuple[dict[tuple[str, str], tuple[str, str]], set[tuple[str, str]]]:
    """The stored records of the idempotency keys of `units`: (agent, key) -> (request hash,
    response) for live ones, and the set of expired ones (older than IDEMPOTENCY_KEEP_SECONDS)."""
    claims = [unit.idempotency for unit in units if unit.idempotency is not None]
    if not claims:
        return {}, set()
    keys = sorted({claim.key for claim in claims})
    rows = await conn.fetch(
        "SELECT agent_id, idempotency_key, request_hash, response, created_at FROM idempotency_keys"
        f" WHERE tenant_id = ? AND idempotency_key IN ({_placeholders(keys)})",
        tenant,
        *keys,
    )
    cutoff = rfc3339(datetime.fromtimestamp(unix_time - IDEMPOTENCY_KEEP_SECONDS, UTC))
    live: dict[tuple[str, str], tuple[str, str]] = {}
    stale: set[tuple[str, str]] = set()
    for row in rows:
        pair = (row["agent_id"], row["idempotency_key"])
        if row["created_at"] < cutoff:
            stale.add(pair)
        else:
            live[pair] = (row["request_hash"], row["response"])
    return live, stale


async def dead_credentials(conn: Conn, units: list[Unit], now: str) -> dict[str, str]:
    """The credentials of `units` that may no longer act at `now`: key id -> `invalid_token`
    (revoked or unknown) or `token_expired`."""
    ids = sorted({unit.credential for unit in units if unit.credential is not None})
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT id, revoked_at, expires_at FROM api_keys WHERE id IN ({', '.join('?' * len(ids))})", *ids
    )
    dead = dict.fromkeys(ids, "invalid_token")
    for row in rows:
        if row["revoked_at"] is not None:
            continue
        if row["expires_at"] is not None and row["expires_at"] <= now:
            dead[row["id"]] = "token_expired"
        else:
            del dead[row["id"]]
    return dead


async def create_chain(conn: Conn, tenant: str) -> None:
    """Start a tenant's empty chain (inside the transaction that creates the tenant)."""
    await conn.execute(
        "INSERT INTO audit_heads (tenant_id, size, head) VALUES (?, 0, ?)", tenant, GENESIS_PREV
    )


class CommitGroup:
    """One transaction for the fast-path batches of several tenants (PostgreSQL).

    Each tenant's chain writer commits its own batches, so with the load spread over many
    tenants each commit carries few proposals: one transaction (and WAL flush, NOTIFY and
    webhook wake-up) per proposal or two. The writers of one process hand their one-statement
    appends here instead: the batches that arrive while a transaction is under way wait for the
    next one, which carries them all in one statement (`Database.append_batches`). Each
    tenant's compare-and-set is the same as alone, so its chain stays serial and a stale head
    writes nothing for that tenant only; a statement that fails writes nothing for any of
    them, and each writer then takes its locked path (a database outage: 503, as alone).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._waiting: list[tuple[str, dict[str, Any], asyncio.Future[bool | tuple[int, str]]]] = []
        self._leading = False  # a transaction is under way (or about to be)
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # committed transactions, for tests and the benchmark
        self.batches = 0  # tenants' batches they carried

    async def append(self, tenant: str, **arguments: Any) -> bool | tuple[int, str]:
        """`Database.append_batch(tenant, **arguments)`, in the next transaction. With none under
        way, the caller runs it itself (in its own task: its trace has the storage spans);
        batches that arrive meanwhile go together into the next one."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool | tuple[int, str]] = loop.create_future()
        self._waiting.append((tenant, arguments, future))
        if not self._leading:
            self._leading = True
            try:
                await asyncio.sleep(0)  # batches ready in this same turn of the loop join in
                await self._commit_waiting()
            finally:
                self._leading = False
                if self._waiting:  # arrived during the commit: they get a transaction of their own
                    self._leading = True
                    self._task = loop.create_task(self._lead_rest(), name="commit-group")
        return await future

    async def _lead_rest(self) -> None:
        try:
            while self._waiting:
                await self._commit_waiting()
        finally:
            self._leading = False

    async def _commit_waiting(self) -> None:
        """Commit every batch waiting now in one transaction and settle their futures."""
        group, self._waiting = sorted(self._waiting, key=lambda item: item[0]), []
        try:
            applied = await self.db.append_batches([(tenant, arguments) for tenant, arguments, _ in group])
        except BaseException as exc:  # each writer decides: locked path, or 503 for an outage
            failure = exc if isinstance(exc, Exception) else Unavailable("the commit was interrupted")
            for _, _, future in group:
                if not future.done():
                    future.set_exception(failure)
                    future.exception()  # its writer may have gone (closed): not "never retrieved"
            if not isinstance(exc, Exception):
                raise
            return
        self.transactions += 1
        self.batches += len(group)
        for (_, _, future), result in zip(group, applied, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ChainWriter:
    """The single writer of one tenant's chain in this process (group commit)."""

    def __init__(
        self,
        db: Database,
        tenant: str,
        on_commit: OnCommit | None = None,
        group: CommitGroup | None = None,
    ) -> None:
        self.db = db
        self.tenant = tenant
        self._group = group or CommitGroup(db)  # the process's, shared by its writers
        self._on_commit = on_commit  # told after each batch commits (see `Ledger.on_commit`)
        self._head: Head | None = None  # as this writer last wrote it; None: read it under lock
        self.batches = {"fast": 0, "locked": 0}  # committed batches per path, for tests and metrics
        self.stale_heads = 0  # fast attempts refused because another process had moved the head
        # agent -> the window in which the database refused it for its rate limit. Proposals
        # only add to a window's count, so it stays refused for the rest of that window (only a
        # raised limit could change that: `forget_rate_limited`).
        self.rate_limited: dict[str, int] = {}
        self._queue: asyncio.Queue[Unit] = asyncio.Queue()
        self.max_pending = MAX_PENDING_UNITS
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"chain-writer:{tenant}")

    def learn(self, head: Head) -> None:
        """Another process moved this chain to `head` (a hint: its NOTIFY). The next batch is
        chained on it rather than on the head this writer knows, now stale; a wrong hint costs
        one refused compare-and-set, as a stale head does."""
        if self._head is not None and head.size > self._head.size:
            self._head = head

    def is_rate_limited(self, agent_id: str, unix_time: float) -> bool:
        """Whether the database already refused this agent's proposals in the current window."""
        return self.rate_limited.get(agent_id) == window_of(unix_time)

    def verify_room(self, count: int) -> None:
        """Raises Overloaded unless `count` more units fit in the queue (MAX_PENDING_UNITS)."""
        waiting = self._queue.qsize()
        if waiting + count > self.max_pending:
            raise Overloaded(
                f"the audit log of this tenant has {waiting} changes waiting to commit; retry shortly"
            )

    def enqueue(self, unit: Unit) -> asyncio.Future[list[int]]:
        """Queue `unit` for the next group commit; the future gets its seqs or its error."""
        unit.future = asyncio.get_running_loop().create_future()
        unit.trace_link = telemetry.current_link()
        self._queue.put_nowait(unit)
        return unit.future

    async def append(self, unit: Unit) -> list[int]:
        return await self.enqueue(unit)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            started = perf_counter()
            try:
                with telemetry.batch_span(
                    "chain_writer.batch", [unit.trace_link for unit in batch], units=len(batch)
                ):
                    path = "fast" if await self._write_fast(batch) else "locked"
                    if path == "locked":
                        await self._write(batch)
                metrics.CHAIN_BATCH_SIZE.observe(len(batch))
                metrics.CHAIN_COMMIT.labels(path).observe(perf_counter() - started)
            except Exception as exc:  # the writer outlives any failure: answer the batch with it
                self._head = None
                if not isinstance(exc, AppError):
                    log.exception("audit append failed for tenant %s", self.tenant)
                for unit in batch:
                    _settle(unit, exc)

    async def _write_fast(self, batch: list[Unit]) -> bool:
        """One-statement append (PostgreSQL). False when it did not apply: nothing was written.

        When another process moved the head, the statement answers the new one and the batch
        is chained again on it; the last attempt holds the head's lock meanwhile, so that a
        writer that keeps losing the race to another process's writer still commits in one
        statement. Left to the locked path: a batch a condition refuses (a policy, a key, a
        rate, a record), whose units it must answer one by one.
        """
        arguments = self._fast_arguments(batch)
        if arguments is None:
            return False
        try:  # once, for every attempt
            unplaced = unplace_units(self.tenant, batch, arguments["credentials"][1])
        except Exception:  # an entry JSON cannot carry: the locked path answers each unit
            log.warning(
                "entries of tenant %s cannot be encoded; writing under lock", self.tenant, exc_info=True
            )
            return False
        for attempt in range(FAST_ATTEMPTS):
            head = self._head
            if head is None:
                return False
            chained: Chained | None = None

            def on(current: Head) -> dict[str, Any]:
                nonlocal chained
                chained = chain_units(self.tenant, batch, current, arguments["credentials"][1], unplaced)
                return arguments | {
                    "expected_head": (current.size, current.hash),
                    "new_head": (chained.head.size, chained.head.hash),
                    "entry_rows": chained.entry_rows,
                    "inserts": chained.inserts,
                }

            try:
                if attempt < FAST_ATTEMPTS - 1:
                    applied = await self._group.append(self.tenant, **on(head))
                else:
                    applied = await self.db.append_batch_locked(
                        self.tenant, lambda size, hash: on(Head(size, hash))
                    )
            except Unavailable:
                # The database went away mid-statement: it may have committed. Answer 503 rather
                # than write the batch again under lock (the client retries, with its idempotency key).
                self._head = None
                raise
            except Exception:
                log.warning(
                    "fast append failed for tenant %s; retrying under lock", self.tenant, exc_info=True
                )
                self._head = None
                return False
            if applied is True and chained is not None:
                self._committed_fast(batch, chained)
                return True
            # the current head, as the statement saw it, or read now
            self._head = Head(*applied) if applied else await self._read_head()
            self.stale_heads += self._head != head
            if self._head == head:  # the head did not move: the policy, a key, a rate or a record
                return False
        return False

    def _fast_arguments(self, batch: list[Unit]) -> dict[str, Any] | None:
        """The conditions of a one-statement append of `batch` (`Database.append_batch`), or
        None when only the locked path can write it."""
        if not self.db.supports_fast_append or not all(unit.plain for unit in batch):
            return None
        expected = {unit.policy_version for unit in batch if unit.expects_policy}
        configs = {unit.config_version for unit in batch if unit.config_version is not None}
        claims = [(unit.idempotency.agent_id, unit.idempotency.key) for unit in batch if unit.idempotency]
        if len(expected) > 1 or len(configs) > 1 or len(set(claims)) < len(claims):
            return None  # (one key twice in a batch: the locked path answers both)
        moment = utc_now()
        proposals = Counter(unit.rate_agent for unit in batch if unit.rate_agent is not None)
        rate_agents = sorted(proposals)
        return {
            "policy_version": (next(iter(expected)),) if expected else None,
            "config_version": next(iter(configs)) if configs else None,
            "credentials": (
                sorted({u.credential for u in batch if u.credential is not None}),
                rfc3339(moment),
            ),
            "rate": (window_of(moment.timestamp()), rate_agents, [proposals[a] for a in rate_agents]),
            "idempotency": ([agent for agent, _ in claims], [key for _, key in claims]),
        }

    def _committed_fast(self, batch: list[Unit], chained: Chained) -> None:
        """A one-statement append committed: settle its units."""
        self._head = chained.head
        self.batches["fast"] += 1
        metrics.AUDIT_ENTRIES.inc(len(chained.entry_rows))
        start = chained.head.size - len(chained.entry_rows)
        self._committed(start, chained.head, [raw for _, _, raw in chained.entry_rows])
        for unit, seqs in zip(batch, chained.seqs, strict=True):
            _settle(unit, seqs)

    async def _read_head(self) -> Head | None:
        async with self.db.read() as conn:
            row = await conn.fetchrow("SELECT size, head FROM audit_heads WHERE tenant_id = ?", self.tenant)
        return Head(int(row["size"]), row["head"]) if row else None

    async def _write(self, batch: list[Unit]) -> None:
        try:
            async with self.db.transaction() as conn:
                results, head = await write_units(conn, self.tenant, batch, lock=self.db.for_update())
        except Exception as exc:
            self._head = None
            if isinstance(exc, Unavailable):  # the database's fault, not a unit's: answer all
                for unit in batch:
                    _settle(unit, exc)
                return
            if len(batch) > 1:  # one unit's fault: find which
                for unit in batch:
                    await self._write([unit])
                return
            if not isinstance(exc, AppError):
                log.exception("audit append failed for tenant %s", self.tenant)
            _settle(batch[0], exc)
            return
        self._head = head
        self.batches["locked"] += 1
        metrics.AUDIT_ENTRIES.inc(sum(len(r) for r in results if isinstance(r, list)))
        self._committed(None, head)
        for unit, result in zip(batch, results, strict=True):
            if isinstance(result, ProposalsLimited):
                self.rate_limited[result.agent_id] = result.window
            _settle(unit, result)

    def _committed(self, before: int | None, head: Head, entries: list[bytes] | None = None) -> None:
        """Tell the listener (gateway.events) that the log grew to `head`, its last entries
        `entries` as stored (when at hand)."""
        if self._on_commit is not None and head.size != before:
            try:
                self._on_commit(self.tenant, head.size, entries or [], head.hash)
            except Exception:  # a wake-up is a hint: never let it fail a committed batch
                log.warning("commit listener failed for tenant %s", self.tenant, exc_info=True)


def _settle(unit: Unit, result: list[int] | BaseException) -> None:
    future = unit.future
    if future is None or future.done():  # the caller went away; the unit is committed regardless
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Ledger:
    """The chain writers of this process, one per tenant, created on first use."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writers: dict[str, ChainWriter] = {}
        self.group = CommitGroup(db)  # one transaction for several tenants' fast-path batches
        # Called after each committed batch with the tenant, the new log size and the batch's
        # entries as stored (the last of the log, in seq order; empty when not at hand): the
        # events hub's wake-up. It must not raise or wait.
        self.on_commit: OnCommit | None = None

    async def append(self, tenant: str, unit: Unit) -> list[int]:
        """The unit's seqs once committed; raises the error that refused it. Never refuses for a
        long queue: the request paths that may shed load ask `verify_room` first."""
        writer = self._writer(tenant)
        with telemetry.span("commit", tenant=tenant, entries=len(unit.entries)):
            return await writer.append(unit)

    async def append_all(self, tenant: str, units: list[Unit]) -> list[list[int] | BaseException]:
        """Queue every unit at once, so that they commit together (one group commit, unless the
        queue already held more than MAX_BATCH units); returns each one's seqs or its error
        (Overloaded for all, nothing queued, when they do not fit)."""
        writer = self._writer(tenant)
        try:
            writer.verify_room(len(units))
        except Overloaded as exc:
            return [exc] * len(units)
        futures = [writer.enqueue(unit) for unit in units]
        with telemetry.span("commit", tenant=tenant, entries=sum(len(unit.entries) for unit in units)):
            return await asyncio.gather(*futures, return_exceptions=True)

    def learn_head(self, tenant: str, size: int, head: str) -> None:
        """Another process committed the tenant's chain up to `size` entries, the last hashing to
        `head` (`gateway.events.wakeups`): this process's writer chains its next batch on it."""
        writer = self._writers.get(tenant)
        if writer is not None:
            writer.learn(Head(size, head))

    def verify_room(self, tenant: str, count: int) -> None:
        """Raises Overloaded unless the tenant's writer can queue `count` more units."""
        writer = self._writers.get(tenant)
        if writer is not None:
            writer.verify_room(count)

    def _writer(self, tenant: str) -> ChainWriter:
        writer = self._writers.get(tenant)
        if writer is None:
            writer = self._writers[tenant] = ChainWriter(self.db, tenant, self.on_commit, self.group)
        return writer

    def writer(self, tenant: str) -> ChainWriter | None:
        return self._writers.get(tenant)

    def is_rate_limited(self, tenant: str, agent_id: str, unix_time: float) -> bool:
        """Whether this process already saw the agent refused for its rate limit in this window."""
        writer = self._writers.get(tenant)
        return writer is not None and writer.is_rate_limited(agent_id, unix_time)

    def forget_rate_limited(self, tenant: str) -> None:
        """Drop what this process remembers of refused agents (after a limit changed)."""
        writer = self._writers.get(tenant)
        if writer is not None:
            writer.rate_limited.clear()

    async def close(self) -> None:
        for writer in self._writers.values():
            await writer.close()
        self._writers.clear()
        await self.group.close()
