"""The end of an escalated action's life: the state it can leave `pending_approval` for.

An escalated action waits in `pending_approval` until one of:
- its approvals meet every requirement: `allowed` (decision ALLOW, one signed verdict);
- an approver who could have approved rejects it: `rejected` (DENY);
- its approval window passes: `expired` (DENY);
- its agent or a tenant admin cancels it: `cancelled` (DENY).

Every transition is a ledger unit whose `prepare` re-reads the action under the tenant's chain
lock (one writer per tenant across processes), so exactly one transition happens however many
requests race, and each is an audit entry committed with the new state (DESIGN invariants 2, 7).

Expiry needs no sweeper to be true: whoever reads or answers an action after its window
(`current`) expires it first; the background sweeper (`run_expiry`) only makes it happen
without anyone asking.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway import schemas
from gateway.clock import parse_rfc3339, rfc3339, utc_now
from gateway.errors import Conflict, NotFound
from gateway.health import log_failure
from gateway.ledger import EntryDraft, Ledger, Statement, Unit
from gateway.storage import Conn, Database

log = logging.getLogger("verdict.lifecycle")

PENDING = "pending_approval"
ALLOWED, REJECTED, EXPIRED, CANCELLED = "allowed", "rejected", "expired", "cancelled"
SWEEP_INTERVAL_SECONDS = 5.0
SWEEP_BATCH = 200

ACTION_SQL = (
    "SELECT a.id, a.tenant_id, a.agent_id, a.type, a.action_hash, a.status, a.decision, a.reason,"
    " a.policy_version, a.policy_hash, a.approvals_required, a.approval_expires_at, a.summary,"
    " a.signed_verdict, a.audit_event_ids, t.chain_id, t.verifying_contract, t.rpc_url"
    " FROM actions a JOIN tenants t ON t.id = a.tenant_id WHERE a.id = ?"
)
# With the tenant known, the lookup stays on the tenant's shard (docs/scaling.md).
TENANT_ACTION_SQL = ACTION_SQL + " AND a.tenant_id = ?"

# Arguments: tenant id, action id.
ANSWERS_SQL = (
    "SELECT signer, role, approve, kind, comment, signed_at FROM approvals WHERE tenant_id = ? AND action_id = ?"
    " ORDER BY signed_at, signer"
)


def approval_view(answer: dict[str, Any]) -> schemas.ApprovalView:
    """An `approvals` row (as `ANSWERS_SQL` selects it) as the API shows it."""
    return schemas.ApprovalView(
        answer["signer"], answer["role"], bool(answer["approve"]), answer["signed_at"], answer["kind"],
        answer["comment"],
    )  # fmt: skip


class ActionNotPending(Conflict):
    """The action is no longer waiting for approvals (the problem carries its `action_status`)."""

    code = "action_not_pending"


class WindowExpired(Conflict):
    code = "approval_window_expired"


def not_pending(row: dict[str, Any]) -> Conflict:
    """The refusal for acting on an action that left `pending_approval`."""
    if row["status"] == EXPIRED:
        return WindowExpired(
            f"the approval window of action {row['id']} ended at {row['approval_expires_at']}",
            action_status=EXPIRED,
        )
    return ActionNotPending(
        f"action {row['id']} is {row['status']}, not pending approval", action_status=row["status"]
    )


def is_overdue(row: dict[str, Any], now: datetime) -> bool:
    """A pending action whose approval window has passed."""
    expires = row["approval_expires_at"]
    return row["status"] == PENDING and expires is not None and parse_rfc3339(expires) <= now


async def fetch_action(conn: Conn, action_id: str, tenant_id: str | None = None) -> dict[str, Any] | None:
    """The action with its tenant's domain; by its id alone only where the tenant is unknown
    (a wallet's approval names just the action: that lookup crosses shards on Citus)."""
    if tenant_id is None:
        return await conn.fetchrow(ACTION_SQL, action_id)
    return await conn.fetchrow(TENANT_ACTION_SQL, action_id, tenant_id)


@dataclass(slots=True)
class Finish:
    """The final state an action moves to, and what the transition appends and writes."""

    status: str
    decision: str
    reason: str
    entries: list[EntryDraft]
    signed_verdict: str | None = None  # JSON of the SignedVerdict on `allowed`
    writes: Callable[[list[int]], list[Statement]] | None = None  # more writes (an approval row)
    seqs: list[int] = field(default_factory=list)


def finish_statements(row: dict[str, Any], finish: Finish, seqs: list[int], now: datetime) -> list[Statement]:
    """The action's new state, with the new entries' seqs appended to `audit_event_ids` (proof
    bundles follow them)."""
    statements = finish.writes(seqs) if finish.writes is not None else []
    event_ids = json.loads(row["audit_event_ids"]) + seqs
    if finish.status == PENDING:
        statements.append(
            (
                "UPDATE actions SET audit_event_ids = ? WHERE tenant_id = ? AND id = ?",
                (json.dumps(event_ids), row["tenant_id"], row["id"]),
            )
        )
        return statements
    statements.append(
        (
            "UPDATE actions SET status = ?, decision = ?, reason = ?, signed_verdict = ?, decided_at = ?,"
            " audit_event_ids = ? WHERE tenant_id = ? AND id = ?",
            (
                finish.status,
                finish.decision,
                finish.reason,
                finish.signed_verdict if finish.signed_verdict is not None else row["signed_verdict"],
                rfc3339(now),
                json.dumps(event_ids),
                row["tenant_id"],
                row["id"],
            ),
        )
    )
    if finish.status in (REJECTED, EXPIRED, CANCELLED):  # no longer counts against limits
        statements.append(
            ("UPDATE limit_claims SET released_at = ? WHERE tenant_id = ? AND action_id = ? AND released_at IS NULL",
             (rfc3339(now), row["tenant_id"], row["id"]))
        )  # fmt: skip
    return statements


def expiry(row: dict[str, Any]) -> Finish:
    entry = EntryDraft(
        "action.expired",
        "gateway",
        {"approval_expires_at": row["approval_expires_at"], "reason": "approval_expired"},
        row["id"],
    )
    return Finish(EXPIRED, "DENY", "approval_expired", [entry])


async def transition(
    ledger: Ledger,
    tenant_id: str,
    action_id: str,
    decide: Callable[[Conn, dict[str, Any], datetime], Any],
    *,
    credential: str | None = None,
) -> tuple[dict[str, Any], Finish]:
    """Commit one transition of an action, decided under the tenant's chain lock.

    `decide(conn, row, now)` gets the action as it is now (and may read more) and returns the
    `Finish` to commit, or raises an AppError to refuse (nothing is written). It may run more
    than once (a batch that fails is retried unit by unit), so it must only read. An action
    found overdue is expired instead, and the caller gets WindowExpired.
    Returns the row before the transition and the committed Finish (with its seqs).
    """
    outcome: dict[str, Any] = {}

    async def prepare(conn: Conn) -> None:
        outcome.clear()
        row = await fetch_action(conn, action_id, tenant_id)
        if row is None:
            raise NotFound(f"action {action_id!r} not found", code="action_not_found")
        now = utc_now()
        finish = expiry(row) if is_overdue(row, now) else await decide(conn, row, now)
        outcome.update(row=row, finish=finish, now=now, expired=is_overdue(row, now))
        unit.entries = finish.entries

    def statements(seqs: list[int]) -> list[Statement]:
        return finish_statements(outcome["row"], outcome["finish"], seqs, outcome["now"])

    unit = Unit([], statements=statements, prepare=prepare, credential=credential)
    seqs = await ledger.append(tenant_id, unit)
    outcome["finish"].seqs = seqs
    if outcome["expired"]:
        raise not_pending({**outcome["row"], "status": EXPIRED})
    return outcome["row"], outcome["finish"]


async def expire(ledger: Ledger, row: dict[str, Any]) -> None:
    """Expire an overdue pending action (nothing happens if it left `pending_approval` meanwhile)."""

    async def decide(conn: Conn, fresh: dict[str, Any], now: datetime) -> Finish:
        raise not_pending(fresh)  # not overdue under the lock: it was decided meanwhile

    try:
        await transition(ledger, row["tenant_id"], row["id"], decide)
    except Conflict:
        pass


async def current(ledger: Ledger, row: dict[str, Any], refetch: Callable[[], Any]) -> Any:
    """`row` as it is now: when its approval window has passed, expire it first and read it again."""
    if not is_overdue(row, utc_now()):
        return row
    await expire(ledger, row)
    return await refetch()


async def expire_overdue(
    db: Database, ledger: Ledger, tenant_id: str | None = None, now: datetime | None = None
) -> int:
    """Expire every pending action whose window has passed (of one tenant, or all). Returns how
    many were found overdue."""
    moment = rfc3339(now or utc_now())
    sql = "SELECT a.id, a.tenant_id FROM actions a WHERE a.status = ? AND a.approval_expires_at <= ?"
    args: list[Any] = [PENDING, moment]
    if tenant_id is not None:
        sql += " AND a.tenant_id = ?"
        args.append(tenant_id)
    async with db.read() as conn:
        rows = await conn.fetch(f"{sql} ORDER BY a.approval_expires_at LIMIT ?", *args, SWEEP_BATCH)
    await asyncio.gather(*(expire(ledger, row) for row in rows))
    return len(rows)


async def run_expiry(db: Database, ledger: Ledger, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    """The background sweeper: expire overdue actions every `interval` seconds (best effort)."""
    while True:
        try:
            while await expire_overdue(db, ledger) == SWEEP_BATCH:
                pass
        except Exception:
            log_failure(log, "could not expire overdue actions")
        await asyncio.sleep(interval)
