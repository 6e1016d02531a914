"""What a decision reads from the tenant's past: limit window totals and the history context.

Both are read twice per proposal that needs them: once before deciding (speculatively, without
a lock), and for limits once more under the tenant's chain lock (`Unit.prepare`), where the
totals are exact because every commit of the tenant is serialized there (`gateway.ledger`).

Sums are exact: amounts are stored as decimal strings and added as `Decimal` here, the same on
SQLite (which has no decimal type) and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.clock import rfc3339
from gateway.storage import Conn, Insert
from policy import ActionFields, LimitClaim
from policy.decimals import DECIMAL_TEXT
from policy.document import parse_window
from policy.scopes import read_field

__all__ = [
    "CLAIM_COLUMNS",
    "claim_rows",
    "decimal_amount",
    "history_context",
    "window_totals",
]

CLAIM_COLUMNS = ("tenant_id", "limit_id", "bucket", "amount", "action_id", "created_at", "released_at")
# The statuses whose actions count: allowed, and pending approval (they may still be allowed).
COUNTED_STATUSES = ("allowed", "pending_approval")
_ZERO = Decimal(0)


def claim_rows(tenant_id: str, action_id: str, claims: Iterable[LimitClaim], created_at: str) -> list[Insert]:
    return [
        Insert(
            "limit_claims",
            CLAIM_COLUMNS,
            (tenant_id, claim.id, claim.key, format(claim.amount, "f"), action_id, created_at, None),
        )
        for claim in claims
    ]


async def window_totals(
    conn: Conn, tenant_id: str, claims: list[LimitClaim], now: datetime
) -> dict[str, Decimal]:
    """Each claim's bucket total over its window ending at `now`, of unreleased claims."""
    totals: dict[str, Decimal] = {}
    for claim in claims:
        rows = await conn.fetch(
            "SELECT amount FROM limit_claims WHERE tenant_id = ? AND limit_id = ? AND bucket = ?"
            " AND created_at > ? AND released_at IS NULL",
            tenant_id,
            claim.id,
            claim.key,
            rfc3339(now - timedelta(seconds=claim.window_seconds)),
        )
        totals[claim.id] = sum((Decimal(row["amount"]) for row in rows), _ZERO)
    return totals


def decimal_amount(action: Mapping[str, Any], fields: ActionFields) -> str | None:
    """The action's amount as stored for the history context: a decimal string, or None."""
    value = read_field(action, fields.amount)
    return value if isinstance(value, str) and DECIMAL_TEXT.fullmatch(value) else None


async def history_context(
    conn: Conn,
    tenant_id: str,
    agent_id: str,
    needs: frozenset[str],
    action: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The history values of `needs` (`CompiledPolicy.context_needs`), nested as
    `EvaluationInput.context` expects. Values that cannot be known are left out (the policy
    treats them as missing):
    - `vendor.first_seen`, `vendor.prior_count`: the tenant's earlier allowed actions with this
      `action.vendor` (left out when the action names no vendor);
    - `agent.spend.<window>`, `agent.count.<window>`: the agent's allowed and pending actions
      created in the window (spend sums their decimal amounts).
    """
    context: dict[str, Any] = {}
    vendor = action.get("vendor")
    if isinstance(vendor, str) and ("vendor.first_seen" in needs or "vendor.prior_count" in needs):
        row = await conn.fetchrow(
            "SELECT COUNT(*) AS n FROM actions WHERE tenant_id = ? AND vendor = ? AND status = ?",
            tenant_id,
            vendor,
            "allowed",
        )
        prior = int(row["n"]) if row else 0
        known: dict[str, Any] = {}
        if "vendor.first_seen" in needs:
            known["first_seen"] = prior == 0
        if "vendor.prior_count" in needs:
            known["prior_count"] = prior
        context["vendor"] = known
    paths = (path.split(".") for path in needs if path.startswith("agent."))
    windows = sorted({(parts[1], parts[2]) for parts in paths if len(parts) == 3 and parse_window(parts[2])})
    if windows:
        longest = max(parse_window(window) or 0 for _, window in windows)
        rows = await conn.fetch(
            "SELECT created_at, amount FROM actions WHERE tenant_id = ? AND agent_id = ?"
            f" AND created_at > ? AND status IN ({', '.join('?' * len(COUNTED_STATUSES))})",
            tenant_id,
            agent_id,
            rfc3339(now - timedelta(seconds=longest)),
            *COUNTED_STATUSES,
        )
        agent: dict[str, dict[str, Any]] = {}
        for kind, window in windows:
            cutoff = rfc3339(now - timedelta(seconds=parse_window(window) or 0))
            recent = [row for row in rows if row["created_at"] > cutoff]
            if kind == "count":
                agent.setdefault("count", {})[window] = len(recent)
            else:
                spent = sum((Decimal(row["amount"]) for row in recent if row["amount"] is not None), _ZERO)
                agent.setdefault("spend", {})[window] = format(spent, "f")
        context["agent"] = agent
    return context
