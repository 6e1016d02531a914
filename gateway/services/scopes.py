"""Agent scopes: what one agent may propose at all, set by a tenant admin (`policy.scopes`).

A scope change is a ledger unit that bumps the tenant's configuration version
(`Unit.bumps_config`): every proposal decided under the old scope carries the old version and
is refused at commit (`ConfigChanged`) and decided again, so a narrowed scope applies to every
proposal committed after the change, in every process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

from gateway import schemas
from gateway.auth import Principal
from gateway.errors import NotFound, Unprocessable
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.storage import Conn, Database
from policy import ScopeInvalid, load_scope

__all__ = ["ScopeService"]


def _missing(agent_id: str) -> NotFound:
    return NotFound(f"agent {agent_id!r} not found", code="agent_not_found")


class ScopeService:
    def __init__(self, db: Database, ledger: Ledger, changed: Callable[[str, int], None]) -> None:
        self.db = db
        self.ledger = ledger
        self._changed = changed  # (tenant, new configuration version): this process's caches learn it

    async def get(self, tenant_id: str, agent_id: str) -> schemas.AgentScopeView:
        """Raises NotFound (`agent_not_found`)."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT scope FROM agents WHERE tenant_id = ? AND id = ?", tenant_id, agent_id
            )
        if row is None:
            raise _missing(agent_id)
        return schemas.AgentScopeView(tenant_id, agent_id, json.loads(row["scope"]) if row["scope"] else None)

    async def set(
        self, principal: Principal, tenant_id: str, agent_id: str, body: schemas.SetAgentScope | None
    ) -> schemas.AgentScopeView:
        """Set (or, with None, clear) the agent's scope, audited as `agent.scope_set`. Raises
        NotFound (`agent_not_found`), Unprocessable (`scope_invalid`, with every problem)."""
        document: dict[str, Any] | None = None
        if body is not None:
            document = {k: v for k, v in msgspec.to_builtins(body).items() if v is not None}
            try:
                load_scope(document)
            except ScopeInvalid as exc:
                raise Unprocessable(
                    f"the scope has {len(exc.problems)} problem(s)",
                    code="scope_invalid",
                    problems=[problem.as_dict() for problem in exc.problems],
                ) from exc
        stored = json.dumps(document, sort_keys=True) if document is not None else None
        state: dict[str, int] = {}

        async def check_agent(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT t.config_version FROM agents a JOIN tenants t ON t.id = a.tenant_id"
                " WHERE a.tenant_id = ? AND a.id = ?",
                tenant_id,
                agent_id,
            )
            if row is None:
                raise _missing(agent_id)
            state["version"] = int(row["config_version"]) + 1

        unit = Unit(
            [EntryDraft("agent.scope_set", principal.actor, {"agent": agent_id, "scope": document})],
            lambda seqs: [
                ("UPDATE agents SET scope = ? WHERE tenant_id = ? AND id = ?", (stored, tenant_id, agent_id)),
                ("UPDATE tenants SET config_version = config_version + 1 WHERE id = ?", (tenant_id,)),
            ],
            prepare=check_agent,
            bumps_config=True,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        self._changed(tenant_id, state["version"])
        return schemas.AgentScopeView(tenant_id, agent_id, document)
