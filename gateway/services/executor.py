"""The executor: drives executions to their end on their rails, in the gateway's own processes.

Work is claimed durably from the database: a claim is one transaction that picks due rows
(`due_at` passed, no live lease) — with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of
processes and hosts share the work without waiting on each other; SQLite has one writer — and
stamps them with this executor's lease and `attempts + 1`. The claim commits BEFORE any rail
call, so the attempt count is durable: after a crash, an expired lease makes the row due again,
and whoever takes it next sees `attempts > 0` and asks the rail first.

Exactly once (DESIGN invariant 10):
1. every rail request carries the execution id as its idempotency key (the rail itself refuses a
   second payment for one key);
2. before any retry — after a timeout, a 5xx, a refused connection or a crash — the executor asks
   the rail for the status under that key (`RailAdapter.status`), and submits again only when the
   rail says it never received it;
3. each transition commits under the tenant's chain lock with its audit entry, and only if the
   row is still in the state (and this executor's lease) it was claimed in; a late worker whose
   lease was taken over writes nothing.

Retries back off exponentially (`backoff_seconds` doubling, capped), and submissions are bounded
(`max_attempts`): after that, an execution the rail says it never received fails with
`rail_unavailable`. An execution whose outcome is unknown (the rail cannot even answer for its
status) is never declared failed: it stays pending, asked again at the capped backoff, because
failing it could let a second execution pay again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from gateway import metrics, telemetry
from gateway.clock import rfc3339, utc_now
from gateway.errors import AppError, Conflict
from gateway.health import log_failure
from gateway.ledger import EntryDraft, Ledger, Lookup, Statement, Unit
from gateway.rails.base import (
    ABSENT,
    FAILED,
    PROCESSING,
    SUCCEEDED,
    Payment,
    RailAdapter,
    RailConfigError,
    RailError,
    RailOutcome,
)
from gateway.rails.base import RailRefused as RailRefusedError
from gateway.services import executions as ex
from gateway.services.rails import RailNotFound, RailService
from gateway.storage import Conn, Database, Insert

log = logging.getLogger("verdict.executor")
ACTOR = "gateway"
CLAIM_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """How the executor paces itself (env: VERDICT_EXECUTION_<NAME> in capitals)."""

    concurrency: int = 64  # executions in flight per process
    lease_seconds: float = 60.0  # must outlast a rail call (bank_api: at most 60 s)
    poll_seconds: float = 0.1  # idle: how often to look for work other processes committed
    backoff_seconds: float = 0.5  # first retry delay, doubling
    max_backoff_seconds: float = 60.0
    max_attempts: int = 8  # submissions of one execution before it fails (outcome known)
    processing_poll_seconds: float = 1.0  # how often to ask about a payment the rail is processing

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ExecutorConfig:
        env = os.environ if environ is None else environ
        config = cls()
        changes: dict[str, Any] = {}
        for name in config.__dataclass_fields__:
            text = env.get(f"VERDICT_EXECUTION_{name.upper()}")
            if text:
                changes[name] = type(getattr(config, name))(float(text))
        return replace(config, **changes)


class Stale(Conflict):
    """The execution moved on (another worker took it over) before this transition committed."""

    code = "execution_stale"


@dataclass(slots=True)
class Transition:
    """One change of an execution: its entries and the columns it sets (besides the lease)."""

    entries: list[EntryDraft]
    columns: dict[str, Any] = field(default_factory=dict)
    statements: list[Statement] = field(default_factory=list)  # more rows, in the same transaction


_STEP_SQL = (
    "SELECT a.action, a.action_hash, a.signed_verdict, r.tenant_id, r.name, r.kind, r.config, r.secrets, r.updated_at"
    " FROM actions a LEFT JOIN rails r ON r.tenant_id = a.tenant_id AND r.name = ? WHERE a.tenant_id = ? AND a.id = ?"
)
_FRESH_SQL = (
    "SELECT e.id, e.status, e.rollback_status, e.lease_owner, e.audit_event_ids,"
    " a.audit_event_ids AS action_event_ids FROM executions e"
    " JOIN actions a ON a.tenant_id = e.tenant_id AND a.id = e.action_id"
    " WHERE e.tenant_id = ? AND e.id IN ({})"
)


async def read_fresh(conn: Conn, tenant_id: str, execution_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The executions as they are now, with their actions' entry lists (`Lookup.read`)."""
    sql = _FRESH_SQL.format(", ".join("?" * len(execution_ids)))
    return {row["id"]: row for row in await conn.fetch(sql, tenant_id, *execution_ids)}


def _claim_sql(lock: str) -> str:
    return (
        "UPDATE executions SET lease_owner = ?, lease_until = ?, due_at = ?, attempts = attempts + 1"
        " WHERE (tenant_id, id) IN (SELECT tenant_id, id FROM executions WHERE due_at <= ?"
        f" AND (lease_until IS NULL OR lease_until <= ?) ORDER BY due_at LIMIT ?{lock})"
        f" RETURNING {ex.COLUMNS}"
    )


class Executor:
    """One process's executor (start `run` as a background task; `wake` after a request)."""

    def __init__(
        self, db: Database, ledger: Ledger, rails: RailService, config: ExecutorConfig | None = None
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.rails = rails
        self.config = config or ExecutorConfig()
        self.owner = f"exr_{secrets.token_hex(8)}"
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved = 0  # slots promised to executions being accepted in this process
        lock = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgresql" else ""
        self._claim = _claim_sql(lock)

    def wake(self) -> None:
        self._wake.set()

    def reserve(self) -> tuple[str, str] | None:
        """A slot for an execution this process is accepting: the (owner, lease end) to insert it
        with, claimed by this executor (so no other process takes it while the lease lasts, and
        a crash leaves it due again when it ends), or None when every slot is taken."""
        if len(self._tasks) + self._reserved >= self.config.concurrency:
            return None
        self._reserved += 1
        return self.owner, rfc3339(utc_now() + timedelta(seconds=self.config.lease_seconds))

    def unreserve(self) -> None:
        """The execution a slot was reserved for did not commit (refused, or a replay)."""
        self._reserved -= 1
        self._wake.set()

    def adopt(self, row: dict[str, Any], found: dict[str, Any]) -> None:
        """Run a committed execution inserted under this executor's lease (`reserve`), with the
        action and rail rows its request read: no claim, no read, before the request answers."""
        self._reserved -= 1
        self._start(row, found)

    def _start(self, row: dict[str, Any], found: dict[str, Any] | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self.step(row, found), name=f"execution:{row['id']}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def run(self) -> None:
        """Claim and process due executions until cancelled (best effort: errors are logged)."""
        try:
            while True:
                free = self.config.concurrency - len(self._tasks) - self._reserved
                claimed: list[dict[str, Any]] = []
                if free > 0:
                    self._wake.clear()
                    try:
                        claimed = await self.claim(free)
                    except Exception:  # the database is away: say so once a second, not per poll
                        log_failure(log, "could not claim executions")
                        await asyncio.sleep(CLAIM_RETRY_SECONDS)
                for row in claimed:
                    self._start(row)
                if len(claimed) < free or free <= 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)
                    except TimeoutError:
                        pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.release()

    async def release(self) -> None:
        """Give back this executor's leases (a graceful stop): the rows are due again at once, for
        another process, and the next attempt asks the rail first. Best effort: a lease also
        expires on its own."""
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE executions SET lease_owner = NULL, lease_until = NULL, due_at = ? WHERE lease_owner = ?",
                    rfc3339(utc_now()), self.owner,
                )  # fmt: skip
        except Exception:
            log_failure(log, "could not release this executor's leases; they expire on their own")

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.error("execution step failed", exc_info=task.exception())

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        """Take up to `limit` due executions under this executor's lease (committed at return)."""
        now = utc_now()
        until = rfc3339(now + timedelta(seconds=self.config.lease_seconds))
        async with self.db.read() as conn:  # idle: a read, not a write transaction, per poll
            due = await conn.fetchrow(
                "SELECT 1 AS due FROM executions WHERE due_at <= ? LIMIT 1", rfc3339(now)
            )
        if due is None:
            return []
        async with self.db.transaction() as conn:
            # due again when the lease ends (a crash): until then, idle polls see nothing due
            return await conn.fetch(self._claim, self.owner, until, until, rfc3339(now), rfc3339(now), limit)

    # ---- one step of one execution

    async def step(self, row: dict[str, Any], found: dict[str, Any] | None = None) -> None:
        """Move a claimed execution one step: submit, ask, or reverse, then record what happened.
        `found`: its action and rail rows, when the caller has them."""
        try:
            if found is None:
                async with self.db.read() as conn:  # the action and its rail, in one round trip
                    found = await conn.fetchrow(_STEP_SQL, row["rail"], row["tenant_id"], row["action_id"])
            if found["name"] is None:
                raise RailNotFound(f"rail {row['rail']!r} not found")
            adapter = self.rails.adapter_of(found)
            payment = ex.payment_of(
                {**found, "id": row["action_id"], "tenant_id": row["tenant_id"]}, row["id"]
            )
            if row["rollback_status"] == ex.REQUESTED:
                transition = await self._reverse(row, adapter, payment)
            elif row["status"] == ex.PENDING:
                transition = await self._submit(row, adapter, payment)
            elif row["status"] == ex.SUBMITTED:
                transition = await self._follow(row, adapter, payment)
            else:
                transition = None
        except RailError as exc:  # unknown outcome: try again later (asking first)
            await self.retry_later(row, exc)
            return
        except AppError as exc:  # a removed rail, unreadable secrets: try again later
            await self.retry_later(row, RailError(exc.detail, code=exc.code))
            return
        except RailConfigError as exc:  # the rail's host now resolves to a private address
            await self.retry_later(row, RailError(str(exc), code="rail_address_refused"))
            return
        if (
            transition is None
            and row["status"] not in (ex.PENDING, ex.SUBMITTED)
            and row["rollback_status"] != ex.REQUESTED
        ):
            await self.park(row)  # nothing left to do (a row made due by mistake): stop taking it up
            return
        if transition is None:
            await self.retry_later(row, None)
            return
        try:
            with telemetry.batch_span("execute.step", [], execution_id=row["id"], action_id=row["action_id"]):
                await self.commit(row, transition)
        except Stale:
            log.info("execution %s moved on before this step recorded; leaving it", row["id"])
            return
        status = transition.columns.get("status")
        if status in (ex.SUCCEEDED, ex.FAILED, ex.ROLLED_BACK):
            metrics.EXECUTIONS.labels(found["kind"] or "unknown", status).inc()

    async def _submit(self, row: dict[str, Any], adapter: RailAdapter, payment: Payment) -> Transition | None:
        """A pending execution: ask first when an earlier attempt may have reached the rail."""
        earlier = int(row["attempts"]) - 1
        outcome: RailOutcome | None = None
        if earlier > 0:
            outcome = await adapter.status(payment)
            if outcome.state == ABSENT:
                if earlier >= self.config.max_attempts:
                    return self._failed(row, "rail_unavailable",
                                        f"the rail did not take the payment in {earlier} attempts")  # fmt: skip
                outcome = None
        if outcome is None:
            try:
                outcome = await adapter.submit(payment)
            except RailRefusedError as exc:
                return self._failed(row, exc.code, exc.message)
        return self._outcome(row, outcome)

    async def _follow(self, row: dict[str, Any], adapter: RailAdapter, payment: Payment) -> Transition | None:
        """A submitted execution the rail was still processing."""
        outcome = await adapter.status(payment)
        if outcome.state in (ABSENT, PROCESSING):
            return None
        return self._outcome(row, outcome)

    def _outcome(self, row: dict[str, Any], outcome: RailOutcome) -> Transition | None:
        now = rfc3339(utc_now())
        entries: list[EntryDraft] = []
        columns: dict[str, Any] = {}
        if row["status"] == ex.PENDING:
            entries.append(self._entry(row, "execution.submitted", reference=outcome.reference,
                                       attempt=int(row["attempts"]), executor=self.owner))  # fmt: skip
            columns.update(status=ex.SUBMITTED, reference=outcome.reference, submitted_at=now)
        if outcome.state == SUCCEEDED:
            result = {"reference": outcome.reference, **outcome.details}
            entries.append(
                self._entry(row, "execution.succeeded", reference=outcome.reference, result=result)
            )
            columns.update(status=ex.SUCCEEDED, result=json.dumps(result), finished_at=now, due_at=None)
            if outcome.body is not None:
                content_type = str(outcome.details.get("content_type", ""))[:200]
                extra = [Insert("execution_results", ex.RESULT_COLUMNS,
                                (row["tenant_id"], row["id"], content_type, outcome.body, now)).statement()]  # fmt: skip
                return Transition(entries, columns, extra)
        elif outcome.state == FAILED:
            code, message = (
                outcome.code or "rail_failed",
                outcome.message or "the rail reports the payment failed",
            )
            entries.append(
                self._entry(row, "execution.failed", code=code, message=message, reference=outcome.reference)
            )
            columns.update(
                status=ex.FAILED, live=None, code=code, message=message, finished_at=now, due_at=None
            )
        else:  # processing: ask again later
            columns["due_at"] = rfc3339(utc_now() + timedelta(seconds=self.config.processing_poll_seconds))
        return Transition(entries, columns) if entries else None

    def _failed(self, row: dict[str, Any], code: str, message: str) -> Transition:
        entry = self._entry(row, "execution.failed", code=code, message=message, reference=None)
        now = rfc3339(utc_now())
        return Transition([entry], {"status": ex.FAILED, "live": None, "code": code, "message": message,
                                    "finished_at": now, "due_at": None})  # fmt: skip

    async def _reverse(
        self, row: dict[str, Any], adapter: RailAdapter, payment: Payment
    ) -> Transition | None:
        """A rollback: the reversal carries its own idempotency key, so asking again is safe."""
        by, reason = row["rollback_by"], row["rollback_reason"]
        try:
            outcome = await adapter.reverse(payment, row["reference"], reason)
        except RailRefusedError as exc:
            outcome = RailOutcome(FAILED, None, exc.code, exc.message)
        now = rfc3339(utc_now())
        if outcome.state == SUCCEEDED:
            entry = self._entry(
                row, "execution.rolled_back", reason=reason, by=by, reference=outcome.reference
            )
            return Transition([entry], {"status": ex.ROLLED_BACK, "rollback_status": SUCCEEDED, "due_at": None,
                                        "rollback_reference": outcome.reference, "rolled_back_at": now})  # fmt: skip
        if outcome.state == FAILED:
            code = outcome.code or "reversal_failed"
            entry = self._entry(row, "execution.rollback_failed", reason=reason, by=by, code=code,
                                message=outcome.message)  # fmt: skip
            return Transition([entry], {"rollback_status": FAILED, "due_at": None, "code": code,
                                        "message": outcome.message})  # fmt: skip
        return None

    def _entry(self, row: dict[str, Any], kind: str, **data: Any) -> EntryDraft:
        return EntryDraft(kind, ACTOR, {"execution_id": row["id"], **data}, row["action_id"])

    # ---- recording

    async def commit(self, row: dict[str, Any], transition: Transition) -> None:
        """Commit a transition with its entries, if the row is still as claimed under this lease.
        Raises Stale otherwise (nothing written)."""
        tenant_id, execution_id = row["tenant_id"], row["id"]
        state: dict[str, Any] = {}

        def check(fresh: dict[str, Any] | None) -> None:
            if (
                fresh is None
                or fresh["lease_owner"] != self.owner
                or fresh["status"] != row["status"]
                or fresh["rollback_status"] != row["rollback_status"]
            ):
                raise Stale(f"execution {execution_id} changed")
            state.update(fresh=fresh, action={"audit_event_ids": fresh["action_event_ids"]})

        def statements(seqs: list[int]) -> list[Statement]:
            columns = {
                **transition.columns,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": rfc3339(utc_now()),
                "audit_event_ids": json.dumps(json.loads(state["fresh"]["audit_event_ids"]) + seqs),
            }
            sets = ", ".join(f"{name} = ?" for name in columns)
            return [
                (f"UPDATE executions SET {sets} WHERE tenant_id = ? AND id = ?",
                 (*columns.values(), tenant_id, execution_id)),
                ("UPDATE actions SET audit_event_ids = ? WHERE tenant_id = ? AND id = ?",
                 (json.dumps(json.loads(state["action"]["audit_event_ids"]) + seqs), tenant_id, row["action_id"])),
                *transition.statements,
            ]  # fmt: skip

        lookup = Lookup(read_fresh, execution_id, check, row["action_id"])
        await self.ledger.append(tenant_id, Unit(transition.entries, statements=statements, lookup=lookup))

    async def park(self, row: dict[str, Any]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE executions SET due_at = NULL, lease_owner = NULL, lease_until = NULL"
                " WHERE tenant_id = ? AND id = ? AND lease_owner = ?",
                row["tenant_id"], row["id"], self.owner,
            )  # fmt: skip

    async def retry_later(self, row: dict[str, Any], error: RailError | None) -> None:
        """Release the lease and make the row due again after a backoff (no state change, so no
        audit entry; the attempt count and last error are visible on the execution)."""
        config = self.config
        if error is None:  # processing: the rail has it; ask at the steady pace
            delay = config.processing_poll_seconds
        else:
            delay = min(
                config.max_backoff_seconds, config.backoff_seconds * 2 ** max(0, int(row["attempts"]) - 1)
            )
            log.info("execution %s: %s (%s); again in %.1f s", row["id"], error.code, error, delay)
        due = rfc3339(utc_now() + timedelta(seconds=delay))
        message = f"{error.code}: {error.message}" if error is not None else row["message"]
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE executions SET due_at = ?, lease_owner = NULL, lease_until = NULL, message = ?,"
                    " updated_at = ? WHERE tenant_id = ? AND id = ? AND lease_owner = ?",
                    due, message, rfc3339(utc_now()), row["tenant_id"], row["id"], self.owner,
                )  # fmt: skip
        except Exception:  # the lease expires on its own; the row becomes due again
            log_failure(log, "could not release execution %s", row["id"])
