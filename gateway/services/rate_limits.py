"""Proposal rate limits of a tenant and its agents: read them, set them (audited).

A limit is a ledger `Unit` with a `rate_limit.set` entry, so it commits together with its
audit entry and in the tenant's chain order: a proposal committed after the change is counted
against the new limit, in every process (`gateway.ratelimit`).
"""

from __future__ import annotations

from gateway import schemas
from gateway.auth import Principal
from gateway.errors import NotFound, Unprocessable
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.ratelimit import DEFAULT_PROPOSALS_PER_MINUTE, MAX_PROPOSALS_PER_MINUTE, TENANT_DEFAULT
from gateway.storage import Conn, Database

_UPSERT = (
    "INSERT INTO rate_limits (tenant_id, agent_id, propose_per_minute) VALUES (?, ?, ?)"
    " ON CONFLICT (tenant_id, agent_id) DO UPDATE SET propose_per_minute = excluded.propose_per_minute"
)
_DELETE = "DELETE FROM rate_limits WHERE tenant_id = ? AND agent_id = ?"


def check_limit(value: int | None) -> int | None:
    """Raises Unprocessable (`invalid_rate_limit`) unless None or 1..MAX_PROPOSALS_PER_MINUTE."""
    if value is not None and not 1 <= value <= MAX_PROPOSALS_PER_MINUTE:
        raise Unprocessable(
            f"propose_per_minute must be between 1 and {MAX_PROPOSALS_PER_MINUTE}, or null",
            code="invalid_rate_limit",
            field="propose_per_minute",
        )
    return value


class RateLimitService:
    def __init__(self, db: Database, ledger: Ledger) -> None:
        self.db = db
        self.ledger = ledger

    async def get(self, tenant_id: str) -> schemas.RateLimits:
        """The tenant's limits. Raises NotFound (`tenant_not_found`)."""
        async with self.db.read() as conn:
            tenant = await conn.fetchrow("SELECT 1 AS x FROM tenants WHERE id = ?", tenant_id)
            if tenant is None:
                raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
            rows = await conn.fetch(
                "SELECT agent_id, propose_per_minute FROM rate_limits WHERE tenant_id = ? ORDER BY agent_id",
                tenant_id,
            )
        own = {row["agent_id"]: int(row["propose_per_minute"]) for row in rows}
        tenant_limit = own.pop(TENANT_DEFAULT, None)
        return schemas.RateLimits(
            default_propose_per_minute=DEFAULT_PROPOSALS_PER_MINUTE,
            propose_per_minute=tenant_limit,
            effective_propose_per_minute=tenant_limit or DEFAULT_PROPOSALS_PER_MINUTE,
            agents=[schemas.AgentRateLimit(agent, limit) for agent, limit in own.items()],
        )

    async def set(
        self, principal: Principal, tenant_id: str, agent_id: str | None, body: schemas.SetRateLimit
    ) -> schemas.RateLimits:
        """Set (or with null, remove) the tenant's limit, or one agent's. Raises NotFound
        (`tenant_not_found`, `agent_not_found`), Unprocessable (`invalid_rate_limit`)."""
        limit = check_limit(body.propose_per_minute)
        await self.get(tenant_id)
        row_agent = agent_id if agent_id is not None else TENANT_DEFAULT

        async def require_agent(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT 1 AS x FROM agents WHERE tenant_id = ? AND id = ?", tenant_id, agent_id
            )
            if row is None:
                raise NotFound(f"agent {agent_id!r} not found", code="agent_not_found")

        write = (
            (_DELETE, (tenant_id, row_agent)) if limit is None else (_UPSERT, (tenant_id, row_agent, limit))
        )
        unit = Unit(
            [
                EntryDraft(
                    "rate_limit.set",
                    principal.actor,
                    {"agent_id": agent_id, "propose_per_minute": limit},
                )
            ],
            lambda seqs: [write],
            prepare=require_agent if agent_id is not None else None,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        self.ledger.forget_rate_limited(tenant_id)
        return await self.get(tenant_id)
