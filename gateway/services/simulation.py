"""Policy simulation over the tenant's recorded actions: what a draft would decide differently.

`POST /v1/tenants/{tenant}/policies/simulate` replays the tenant's last N actions (or those of
a time range) through a draft document with `policy.simulate`, writing nothing. Each action is
replayed as recorded: its action, agent, time, the history context it was decided with and the
window totals of its limits (a limit the draft adds starts at 0); the agent's scope and the
tenant's time zone are the current ones. The recorded decision is the one made at proposal time
(an escalation, even if it was approved or rejected since).
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import msgspec

from gateway import schemas
from gateway.clock import parse_rfc3339, rfc3339
from gateway.errors import InvalidRequest, NotFound
from gateway.services.actions import scope_of
from gateway.services.policies import load_draft
from gateway.storage import Database
from policy import ApprovalRequirement, EvaluationInput, RecordedRequest, simulate

__all__ = ["MAX_SIMULATED", "simulate_draft"]

MAX_SIMULATED = 1000
_APPROVALS = msgspec.json.Decoder(list[ApprovalRequirement] | None)


def _nest(flat: dict[str, Any] | None) -> dict[str, Any] | None:
    """`{"vendor.first_seen": true}` (as stored) -> `{"vendor": {"first_seen": true}}` (as evaluated)."""
    if flat is None:
        return None
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return nested


def _time(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return rfc3339(parse_rfc3339(value))
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an RFC 3339 time", code="invalid_time") from exc


async def simulate_draft(
    db: Database,
    tenant_id: str,
    body: bytes,
    content_type: str,
    *,
    last: int,
    created_from: str | None,
    created_to: str | None,
) -> schemas.SimulationResult:
    """Raises Unprocessable (`policy_invalid`), UnsupportedMediaType, InvalidRequest, NotFound."""
    if not 1 <= last <= MAX_SIMULATED:
        raise InvalidRequest(f"last must be between 1 and {MAX_SIMULATED}", code="invalid_limit")
    draft = load_draft(body, content_type).compiled
    where, args = ["tenant_id = ?"], [tenant_id]
    for op, value, name in ((">=", created_from, "from"), ("<", created_to, "to")):
        moment = _time(value, name)
        if moment is not None:
            where.append(f"created_at {op} ?")
            args.append(moment)
    async with db.read() as conn:
        tenant = await conn.fetchrow("SELECT name, timezone FROM tenants WHERE id = ?", tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
        agents = {
            row["id"]: row
            for row in await conn.fetch("SELECT id, name, scope FROM agents WHERE tenant_id = ?", tenant_id)
        }
        rows = await conn.fetch(
            "SELECT id, agent_id, action, created_at, decision, reason, proposed_reason, approvals_required,"
            f" context, limits FROM actions WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            *args,
            last,
        )
    tenant_view: dict[str, Any] = {"id": tenant_id, "name": tenant["name"]}
    if tenant["timezone"] is not None:
        tenant_view["timezone"] = tenant["timezone"]
    recorded = []
    for row in reversed(rows):  # oldest first
        agent = agents.get(row["agent_id"])
        request = EvaluationInput(
            action=json.loads(row["action"]),
            agent={"id": row["agent_id"], "name": agent["name"] if agent else row["agent_id"]},
            tenant=tenant_view,
            now=parse_rfc3339(row["created_at"]),
            context=_nest(json.loads(row["context"])) if row["context"] else None,
            scope=scope_of(agent["scope"]) if agent else None,
        )
        totals = {item["id"]: Decimal(item["total"]) for item in json.loads(row["limits"] or "[]")}
        claims = draft.limit_claims(request)
        if claims:
            request = replace(request, usage={c.id: totals.get(c.id, Decimal(0)) for c in claims})
        approvals = _APPROVALS.decode(row["approvals_required"]) if row["approvals_required"] else None
        recorded.append(
            RecordedRequest(
                id=row["id"],
                request=request,
                decision="ESCALATE" if approvals else row["decision"],
                reason=row["proposed_reason"] or row["reason"],
                approvals=approvals,
            )
        )
    return schemas.SimulationResult(replayed=len(recorded), changes=simulate(draft, recorded))
