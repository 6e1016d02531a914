"""Executions: carrying out an allowed action on a rail, exactly once (DESIGN invariant 10).

`POST /v1/actions/{id}/execute` (the proposing agent or a tenant admin) commits, under the
tenant's chain lock and in one transaction with its `execution.requested` entry, an execution
row in `pending` — only if, at that moment, the action is `allowed`, its verdict has not expired
and it has no other execution that has not failed (`executions_one_live`, a unique index,
backs this up). The answer is 202; the executor (`gateway.services.executor`) does the rest in
the background. Refusals, nothing written:

- 404 `action_not_found` (another tenant's, or for an agent another agent's, action);
- 409 `approval_pending` (waiting for approvals), `action_not_allowed` (denied, rejected,
  expired, cancelled: with `action_status`), `verdict_expired` (propose again);
- 409 `already_executing` / `already_executed` with the existing `execution_id`;
- 422 `rail_not_configured`, `rail_required` (several rails fit: name one), `rail_not_allowed`
  (the pinned policy's `action_types.<type>.rails`, or the action's own `rail` member, names
  other rails), `payment_unmappable` (the action cannot be a payment on that rail).

With an `Idempotency-Key` the request is recorded like a proposal's (`idempotency_keys`, per
tenant, caller and key): a repeat gets the first answer, another request with the key 409.

`POST /v1/executions/{id}/rollback` (tenant admin) asks the executor to compensate a succeeded
execution (422 `not_reversible` for rails that cannot); `POST /v1/actions/{id}/rollback` does the
same for the action's execution (409 `not_executed` when it has none that has not failed).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec

from crypto.canonical import canonicalize
from crypto.eip712 import hash_verdict, parse_verdict_typed_data
from gateway import execution_schemas as wire
from gateway.auth import AGENT, Principal
from gateway.clock import new_id, rfc3339, rfc3339_seconds, utc_now
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.ledger import EntryDraft, IdempotencyClaim, Ledger, Lookup, Statement, Unit
from gateway.rails.base import Payment, RailRefused
from gateway.services.policies import PolicyService
from gateway.services.rails import RailService, fetch_rails
from gateway.storage import Conn, Database, Insert

PENDING, SUBMITTED, SUCCEEDED, FAILED, ROLLED_BACK = (
    "pending",
    "submitted",
    "succeeded",
    "failed",
    "rolled_back",
)
REQUESTED = "requested"
MAX_REASON = 1000
COLUMNS = (
    "tenant_id, id, action_id, rail, rail_kind, status, live, requested_by, verdict_digest, verdict_expires_at,"
    " reference, result, code, message, attempts, due_at, lease_owner, lease_until, rollback_status,"
    " rollback_reason, rollback_by, rollback_reference, audit_event_ids, created_at, updated_at,"
    " submitted_at, finished_at, rolled_back_at"
)
_INSERT_COLUMNS = (
    "tenant_id", "id", "action_id", "rail", "rail_kind", "status", "live", "requested_by", "verdict_digest",
    "verdict_expires_at", "attempts", "due_at", "audit_event_ids", "created_at", "updated_at", "lease_owner",
    "lease_until",
)  # fmt: skip
RESULT_COLUMNS = ("tenant_id", "execution_id", "content_type", "body", "created_at")
_IDEMPOTENCY_COLUMNS = (
    "tenant_id", "agent_id", "idempotency_key", "request_hash", "action_id", "response", "created_at"
)  # fmt: skip
_ACTION_SQL = (
    "SELECT a.id, a.tenant_id, a.agent_id, a.type, a.action, a.action_hash, a.status, a.policy_version,"
    " a.signed_verdict, a.audit_event_ids FROM actions a WHERE a.tenant_id = ? AND a.id = ?"
)
_ACTION_LIVE_SQL = (
    "SELECT a.id, a.tenant_id, a.agent_id, a.type, a.action, a.action_hash, a.status, a.policy_version,"
    " a.signed_verdict, a.audit_event_ids, e.id AS live_id, e.status AS live_status FROM actions a"
    " LEFT JOIN executions e ON e.tenant_id = a.tenant_id AND e.action_id = a.id AND e.live = 1"
    " WHERE a.tenant_id = ? AND a.id IN ({})"
)
_accepted = msgspec.json.Decoder(wire.ExecutionAccepted)


async def read_live_actions(conn: Conn, tenant_id: str, action_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The actions (with their live execution, if any) by id, in one query (`Lookup.read`)."""
    sql = _ACTION_LIVE_SQL.format(", ".join("?" * len(action_ids)))
    return {row["id"]: row for row in await conn.fetch(sql, tenant_id, *action_ids)}


class Runner(Protocol):
    """This process's executor, as the request side sees it (`gateway.services.executor`)."""

    def wake(self) -> None: ...  # a row became due: look for work now

    def reserve(self) -> tuple[str, str] | None: ...  # a slot: (owner, lease end), or None (all taken)

    def unreserve(self) -> None: ...  # the reserved execution did not commit

    def adopt(self, row: dict[str, Any], found: dict[str, Any]) -> None: ...  # run it now


class _NoRunner:
    def wake(self) -> None:
        pass

    def reserve(self) -> tuple[str, str] | None:
        return None

    def unreserve(self) -> None:
        pass

    def adopt(self, row: dict[str, Any], found: dict[str, Any]) -> None:
        pass


class ExecutionNotFound(NotFound):
    code = "execution_not_found"


class RailNotAllowed(Unprocessable):
    code = "rail_not_allowed"


def not_found(action_id: str) -> NotFound:
    return NotFound(f"action {action_id!r} not found", code="action_not_found")


def view(row: dict[str, Any]) -> wire.ExecutionView:
    rollback = None
    if row["rollback_status"] is not None:
        rollback = wire.RollbackView(
            row["rollback_status"], row["rollback_reason"], row["rollback_by"], row["rollback_reference"]
        )
    return wire.ExecutionView(
        execution_id=row["id"], action_id=row["action_id"], tenant_id=row["tenant_id"], rail=row["rail"],
        rail_kind=row["rail_kind"], status=row["status"], attempts=int(row["attempts"]),
        requested_by=row["requested_by"], verdict_digest=row["verdict_digest"], created_at=row["created_at"],
        updated_at=row["updated_at"], reference=row["reference"],
        result=json.loads(row["result"]) if row["result"] else None, code=row["code"], message=row["message"],
        submitted_at=row["submitted_at"], finished_at=row["finished_at"], rolled_back_at=row["rolled_back_at"],
        rollback=rollback, audit_event_ids=json.loads(row["audit_event_ids"]),
    )  # fmt: skip


async def executions_of(conn: Conn, tenant_id: str, action_id: str) -> list[wire.ExecutionView]:
    """An action's executions, oldest first (for its record)."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM executions WHERE tenant_id = ? AND action_id = ? ORDER BY created_at, id",
        tenant_id,
        action_id,
    )
    return [view(row) for row in rows]


async def executions_of_actions(
    conn: Conn, tenant_id: str, action_ids: list[str]
) -> dict[str, list[wire.ExecutionView]]:
    """The executions of several actions (a page of the action list), oldest first per action."""
    if not action_ids:
        return {}
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM executions WHERE tenant_id = ?"
        f" AND action_id IN ({', '.join('?' * len(action_ids))}) ORDER BY created_at, id",
        tenant_id,
        *action_ids,
    )
    found: dict[str, list[wire.ExecutionView]] = {}
    for row in rows:
        found.setdefault(row["action_id"], []).append(view(row))
    return found


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an execution needs of the action's signed verdict."""

    digest: str
    expires_at: int


def verdict_of(row: dict[str, Any]) -> Verdict:
    """The EIP-712 digest and expiry of the action's stored verdict (signed by this gateway)."""
    return _verdict_of_text(row["signed_verdict"])


@functools.lru_cache(maxsize=4096)
def _verdict_of_text(text: str) -> Verdict:  # the request and its commit both ask: parse once
    signed = json.loads(text)
    domain, message = parse_verdict_typed_data(signed["typed_data"])
    return Verdict("0x" + hash_verdict(domain, message).hex(), message.expires_at)


def check_executable(row: dict[str, Any], now: datetime) -> Verdict:
    """Raises Conflict unless the action is allowed with a verdict that has not expired at `now`."""
    status = row["status"]
    if status == "pending_approval":
        raise Conflict(f"action {row['id']} is waiting for approvals", code="approval_pending",
                       action_status=status)  # fmt: skip
    if status != "allowed" or not row["signed_verdict"]:
        raise Conflict(f"action {row['id']} is {status}: it may not be executed", code="action_not_allowed",
                       action_status=status)  # fmt: skip
    verdict = verdict_of(row)
    if now.timestamp() >= verdict.expires_at:
        raise Conflict(
            f"the verdict of action {row['id']} expired at {rfc3339_seconds(verdict.expires_at)}; propose again",
            code="verdict_expired", expired_at=rfc3339_seconds(verdict.expires_at),
        )  # fmt: skip
    return verdict


def already(existing: dict[str, Any]) -> Conflict:
    running = existing["status"] in (PENDING, SUBMITTED)
    return Conflict(
        f"action already has execution {existing['id']} ({existing['status']})",
        code="already_executing" if running else "already_executed",
        execution_id=existing["id"], execution_status=existing["status"],
    )  # fmt: skip


def check_not_executed(live: dict[str, Any] | None) -> None:
    """`live`: the action's execution that has not failed ({id, status}; None or a None id: none).
    Raises Conflict (`already_executing`, `already_executed`) when there is one."""
    if live is not None and live["id"] is not None:
        raise already(live)


def check_rollback(execution: dict[str, Any]) -> None:
    """Only a succeeded execution with no rollback under way can be rolled back. Raises
    Conflict (`rollback_in_progress`, `execution_not_succeeded`)."""
    if execution["rollback_status"] == REQUESTED:
        raise Conflict("a rollback of this execution is in progress", code="rollback_in_progress")
    if execution["status"] != SUCCEEDED:
        raise Conflict(f"execution {execution['id']} is {execution['status']}, not succeeded",
                       code="execution_not_succeeded", execution_status=execution["status"])  # fmt: skip


def check_reason(body: wire.RollbackRequest) -> str:
    """The rollback's reason, stripped. Raises Unprocessable (`invalid_reason`)."""
    reason = body.reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise Unprocessable(f"reason must be 1 to {MAX_REASON} characters", code="invalid_reason")
    return reason


def check_reversible(rail: str, reversible: bool) -> None:
    """Raises Unprocessable (`not_reversible`) for a rail that cannot compensate a payment."""
    if not reversible:
        raise Unprocessable(f"rail {rail!r} cannot compensate a payment", code="not_reversible")


def payment_of(row: dict[str, Any], execution_id: str) -> Payment:
    verdict = json.loads(row["signed_verdict"]) if row.get("signed_verdict") else None
    return Payment(
        execution_id, execution_id, row["tenant_id"], row["id"], row["action_hash"], json.loads(row["action"]),
        verdict,
    )  # fmt: skip


def execute_request_hash(action_id: str, rail: str | None) -> str:
    return hashlib.sha256(canonicalize({"execute": action_id, "rail": rail})).hexdigest()


class ExecutionService:
    def __init__(self, db: Database, ledger: Ledger, policies: PolicyService, rails: RailService) -> None:
        self.db = db
        self.ledger = ledger
        self.policies = policies
        self.rails = rails
        # This process's executor (set by the app), which runs an execution accepted here at once,
        # without a claim: `reserve` gives a lease to insert the row with, or None (all its slots
        # are taken: the row is left due, for any process's claim); `adopt` starts it after the
        # commit, with the action and rail rows read for the request.
        self.executor: Runner = _NoRunner()

    async def _choose_rail(self, conn: Conn, row: dict[str, Any], wanted: str | None) -> dict[str, Any]:
        """The rail row to execute on. Raises Unprocessable (see the module docstring)."""
        configured = await fetch_rails(conn, row["tenant_id"])
        allowed: set[str] | None = None
        if row["policy_version"] is not None:
            active = await self.policies.compiled(row["tenant_id"], int(row["policy_version"]))
            rails = active.compiled.action_rails(row["type"])
            allowed = set(rails) if rails is not None else None
        named = json.loads(row["action"]).get("rail")
        if isinstance(named, str):  # the action itself names its rail: the verdict signs it
            allowed = {named} if allowed is None else allowed & {named}
        if wanted is None:
            fits = [name for name in configured if allowed is None or name in allowed]
            if len(fits) != 1:
                code = "rail_required" if fits else "rail_not_configured"
                raise Unprocessable(f"{len(fits)} configured rails fit this action; name one with `rail`",
                                    code=code, rails=fits)  # fmt: skip
            wanted = fits[0]
        if allowed is not None and wanted not in allowed:
            raise RailNotAllowed(f"actions of type {row['type']} may not run on rail {wanted!r}",
                                 allowed_rails=sorted(allowed))  # fmt: skip
        if wanted not in configured:
            raise Unprocessable(f"rail {wanted!r} is not configured", code="rail_not_configured")
        return configured[wanted]

    async def execute(
        self, principal: Principal, action_id: str, body: wire.ExecuteRequest, idempotency_key: str | None
    ) -> tuple[wire.ExecutionAccepted, bool]:
        """Request the execution of an allowed action (see the module docstring for refusals).
        Returns the answer and whether it is a replay of an earlier request's."""
        from gateway.services.actions import check_idempotency_key  # actions imports this module

        tenant_id = principal.tenant_id
        async with self.db.read() as conn:
            row = await conn.fetchrow(_ACTION_SQL, tenant_id, action_id)
            if row is None or row["tenant_id"] != tenant_id:
                raise not_found(action_id)
            if principal.role == AGENT and principal.agent_id != row["agent_id"]:
                raise not_found(action_id)
            claim = None
            if idempotency_key is not None:
                claim = IdempotencyClaim(
                    principal.agent_id or principal.actor, check_idempotency_key(idempotency_key),
                    execute_request_hash(action_id, body.rail),
                )  # fmt: skip
            else:
                check_executable(row, utc_now())
            rail = await self._choose_rail(conn, row, body.rail) if row["status"] == "allowed" else None
        execution_id = new_id("exe")
        if rail is not None:
            try:
                self.rails.adapter_of(rail).check(payment_of(row, execution_id))
            except RailRefused as exc:
                raise Unprocessable(exc.message, code=exc.code) from None
        answer = wire.ExecutionAccepted(execution_id, PENDING, rail["name"] if rail else "", action_id)
        lease = self.executor.reserve() if rail is not None else None
        try:
            replay = await self._commit(principal, row, rail, answer, claim, lease)
        except BaseException:
            if lease is not None:
                self.executor.unreserve()
            raise
        if replay is not None:
            if lease is not None:
                self.executor.unreserve()
            return _accepted.decode(replay), True
        if lease is None:
            self.executor.wake()
        return answer, False

    async def _commit(
        self,
        principal: Principal,
        row: dict[str, Any],
        rail: dict[str, Any] | None,
        answer: wire.ExecutionAccepted,
        claim: IdempotencyClaim | None,
        lease: tuple[str, str] | None,
    ) -> str | None:
        """Commit the execution and its `execution.requested` entry; the stored answer when the
        idempotency key replays. With a `lease` (this process's executor, see `reserve`) the row
        is inserted claimed by it (attempt 1: the claim commits before the rail is called, as a
        claim does) and handed to it after the commit."""
        tenant_id, action_id, execution_id = row["tenant_id"], row["id"], answer.execution_id
        state: dict[str, Any] = {}
        if claim is not None:
            claim.response = msgspec.json.encode(answer).decode()

        def check(fresh: dict[str, Any] | None) -> None:
            if fresh is None:
                raise not_found(action_id)
            now = utc_now()
            verdict = check_executable(fresh, now)
            check_not_executed({"id": fresh["live_id"], "status": fresh["live_status"]})
            if rail is None:  # only reachable with an idempotency key on a stale read
                raise Conflict("the action changed; ask again", code="action_changed")
            state.update(fresh=fresh, now=rfc3339(now), verdict=verdict)
            unit.entries = [
                EntryDraft(
                    "execution.requested",
                    principal.actor,
                    {
                        "execution_id": execution_id, "rail": rail["name"], "rail_kind": rail["kind"],
                        "action_hash": fresh["action_hash"], "verdict_digest": verdict.digest,
                        "verdict_expires_at": rfc3339_seconds(verdict.expires_at),
                    },
                    action_id,
                )
            ]  # fmt: skip

        def statements(seqs: list[int]) -> list[Statement]:
            now, verdict, fresh = state["now"], state["verdict"], state["fresh"]
            owner, until = lease or (None, None)
            values = (
                tenant_id,
                execution_id,
                action_id,
                rail["name"],
                rail["kind"],
                PENDING,
                1,
                principal.actor,
                verdict.digest,
                rfc3339_seconds(verdict.expires_at),
                1 if lease else 0,
                until or now,
                json.dumps(seqs),
                now,
                now,
                owner,
                until,
            )
            state["row"] = {
                **dict.fromkeys(c.strip() for c in COLUMNS.split(",")),
                **dict(zip(_INSERT_COLUMNS, values, strict=True)),
            }
            out = [
                Insert("executions", _INSERT_COLUMNS, values).statement(),
                ("UPDATE actions SET audit_event_ids = ? WHERE tenant_id = ? AND id = ?",
                 (json.dumps(json.loads(fresh["audit_event_ids"]) + seqs), tenant_id, action_id)),
            ]  # fmt: skip
            if claim is not None:
                out.append(Insert("idempotency_keys", _IDEMPOTENCY_COLUMNS, (
                    tenant_id, claim.agent_id, claim.key, claim.request_hash, action_id, claim.response, now,
                )).statement())  # fmt: skip
            return out

        lookup = Lookup(read_live_actions, action_id, check, action_id)
        unit = Unit(
            [], statements=statements, lookup=lookup, credential=principal.credential, idempotency=claim
        )
        await self.ledger.append(tenant_id, unit)
        if lease is not None and unit.replay is None:
            action = {name: row[name] for name in ("action", "action_hash", "signed_verdict")}
            self.executor.adopt(state["row"], {**action, **rail})
        return unit.replay

    async def _row(self, principal: Principal, execution_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {', '.join('e.' + c.strip() for c in COLUMNS.split(','))}, a.agent_id FROM executions e"
                " JOIN actions a ON a.tenant_id = e.tenant_id AND a.id = e.action_id WHERE e.tenant_id = ? AND e.id = ?",
                principal.tenant_id,
                execution_id,
            )
        if row is None or (principal.role == AGENT and principal.agent_id != row["agent_id"]):
            raise ExecutionNotFound(f"execution {execution_id!r} not found")
        return row

    async def get(self, principal: Principal, execution_id: str) -> wire.ExecutionView:
        """Raises ExecutionNotFound (also for another tenant's or another agent's execution)."""
        return view(await self._row(principal, execution_id))

    async def result(self, principal: Principal, execution_id: str) -> wire.ExecutionResult:
        """What the rail answered for the agent (an x402 resource's body). Raises
        ExecutionNotFound, Conflict (`result_not_stored`: not succeeded yet, or a rail that
        stores none, like bank_api)."""
        await self._row(principal, execution_id)
        async with self.db.read() as conn:
            found = await conn.fetchrow(
                "SELECT content_type, body FROM execution_results WHERE tenant_id = ? AND execution_id = ?",
                principal.tenant_id, execution_id,
            )  # fmt: skip
        if found is None:
            raise Conflict(f"execution {execution_id!r} has no stored result", code="result_not_stored")
        body = bytes(found["body"])
        return wire.ExecutionResult(execution_id, found["content_type"], len(body),
                                    base64.b64encode(body).decode(), hashlib.sha256(body).hexdigest())  # fmt: skip

    async def rollback(
        self, principal: Principal, execution_id: str, body: wire.RollbackRequest
    ) -> wire.ExecutionView:
        """Ask for the compensation of a succeeded execution. Raises ExecutionNotFound,
        Unprocessable (`not_reversible`, `invalid_reason`), Conflict (`execution_not_succeeded`,
        `rollback_in_progress`)."""
        reason = check_reason(body)
        row = await self._row(principal, execution_id)
        adapter = await self.rails.adapter(row["tenant_id"], row["rail"])
        check_reversible(row["rail"], adapter.reversible)
        tenant_id = row["tenant_id"]
        state: dict[str, Any] = {}

        async def prepare(conn: Conn) -> None:
            fresh = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM executions WHERE tenant_id = ? AND id = ?", tenant_id, execution_id
            )
            check_rollback(fresh)
            action = await conn.fetchrow(
                "SELECT audit_event_ids FROM actions WHERE tenant_id = ? AND id = ?",
                tenant_id,
                fresh["action_id"],
            )
            state.update(fresh=fresh, action=action, now=rfc3339(utc_now()))

        def statements(seqs: list[int]) -> list[Statement]:
            fresh, now = state["fresh"], state["now"]
            return [
                ("UPDATE executions SET rollback_status = ?, rollback_reason = ?, rollback_by = ?, due_at = ?,"
                 " updated_at = ?, audit_event_ids = ? WHERE tenant_id = ? AND id = ?",
                 (REQUESTED, reason, principal.actor, now, now,
                  json.dumps(json.loads(fresh["audit_event_ids"]) + seqs), tenant_id, execution_id)),
                ("UPDATE actions SET audit_event_ids = ? WHERE tenant_id = ? AND id = ?",
                 (json.dumps(json.loads(state["action"]["audit_event_ids"]) + seqs), tenant_id, fresh["action_id"])),
            ]  # fmt: skip

        entry = EntryDraft("execution.rollback_requested", principal.actor,
                           {"execution_id": execution_id, "reason": reason, "by": principal.actor},
                           row["action_id"])  # fmt: skip
        await self.ledger.append(
            tenant_id, Unit([entry], statements=statements, prepare=prepare, credential=principal.credential)
        )
        self.executor.wake()
        return await self.get(principal, execution_id)

    async def rollback_action(
        self, principal: Principal, action_id: str, body: wire.RollbackRequest
    ) -> wire.ExecutionView:
        """Roll back the action's execution (the one that has not failed): the execution route's
        rules and answers. Raises NotFound (`action_not_found`), Conflict (`not_executed`: the
        action has no such execution) and what `rollback` raises."""
        check_reason(body)
        async with self.db.read() as conn:
            row = (await read_live_actions(conn, principal.tenant_id, [action_id])).get(action_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise not_found(action_id)
        if principal.role == AGENT and principal.agent_id != row["agent_id"]:
            raise not_found(action_id)
        if row["live_id"] is None:
            raise Conflict(f"action {action_id} has no execution to roll back", code="not_executed",
                           action_status=row["status"])  # fmt: skip
        return await self.rollback(principal, row["live_id"], body)
