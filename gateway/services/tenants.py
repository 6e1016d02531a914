"""Tenants, their agents and approvers (API keys: `services.credentials`)."""

from __future__ import annotations

import json

from gateway import schemas
from gateway.auth import AGENT, Principal
from gateway.clock import new_id, new_token, rfc3339, utc_now
from gateway.errors import AppError, Conflict, NotFound, Unprocessable
from gateway.ledger import EntryDraft, Ledger, Unit, create_chain, write_units
from gateway.services.credentials import insert_key
from gateway.services.validation import (
    AGENT_ID,
    ROLE,
    TENANT_ID,
    check_identifier,
    check_name,
    checksum_address,
    resolve_expiry,
)
from gateway.storage import Database, IntegrityError

_TENANT_COLUMNS = "id, name, chain_id, verifying_contract, active_policy_version, created_at"


class TenantService:
    def __init__(self, db: Database, ledger: Ledger) -> None:
        self.db = db
        self.ledger = ledger

    async def create_tenant(self, principal: Principal, body: schemas.CreateTenant) -> schemas.Tenant:
        """Create a tenant and start its audit log with a `tenant.created` entry.

        Raises Unprocessable for a bad id, name, chain id or address; Conflict if it exists.
        """
        check_identifier(body.id, TENANT_ID, "tenant_id")
        check_name(body.name, "name")
        if not 0 < body.chain_id < 2**63:
            raise Unprocessable("chain_id must be a positive EIP-155 chain id", code="invalid_chain_id")
        contract = checksum_address(body.verifying_contract, "verifying_contract")
        now = rfc3339(utc_now())
        tenant = schemas.Tenant(body.id, body.name, body.chain_id, contract, None, now)
        draft = EntryDraft(
            "tenant.created",
            principal.actor,
            {"id": body.id, "name": body.name, "chain_id": body.chain_id, "verifying_contract": contract},
        )
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    f"INSERT INTO tenants ({_TENANT_COLUMNS}) VALUES (?, ?, ?, ?, NULL, ?)",
                    body.id,
                    body.name,
                    body.chain_id,
                    contract,
                    now,
                )
                await create_chain(conn, body.id)
                # (no `credential`: the bootstrap admin's key is not revocable through the API)
                results, _ = await write_units(conn, body.id, [Unit([draft])], lock=self.db.for_update())
                if isinstance(results[0], AppError):
                    raise results[0]
        # (the tenant's chain writer reads the new head under lock on its first batch)
        except IntegrityError as exc:
            raise Conflict(f"tenant {body.id!r} already exists", code="tenant_exists") from exc
        return tenant

    async def get_tenant(self, tenant_id: str) -> schemas.Tenant:
        """Raises NotFound (`tenant_not_found`)."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE id = ?", tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
        return schemas.Tenant(**row)

    async def create_agent(
        self, principal: Principal, tenant_id: str, body: schemas.CreateAgent
    ) -> schemas.CreatedAgent:
        """Register an agent and give it a token (shown once). Raises Conflict if the id is
        taken, Unprocessable for a bad id, name or expiry."""
        await self.get_tenant(tenant_id)
        agent_id = check_identifier(body.id, AGENT_ID, "agent_id") if body.id else new_id("agt")
        name = check_name(body.name, "name") if body.name is not None else agent_id
        moment = utc_now()
        expires_at = resolve_expiry(body.expires_at, body.ttl_seconds, moment)
        key_id, token = new_id("key"), new_token()
        now = rfc3339(moment)

        async def refuse_taken(conn) -> None:
            row = await conn.fetchrow(
                "SELECT 1 AS x FROM agents WHERE tenant_id = ? AND id = ?", tenant_id, agent_id
            )
            if row is not None:
                raise Conflict(f"agent {agent_id!r} already exists", code="agent_exists")

        unit = Unit(
            [
                EntryDraft(
                    "agent.created",
                    principal.actor,
                    {"id": agent_id, "name": name, "key_id": key_id, "expires_at": expires_at},
                )
            ],
            lambda seqs: [
                (
                    "INSERT INTO agents (tenant_id, id, name, created_at) VALUES (?, ?, ?, ?)",
                    (tenant_id, agent_id, name, now),
                ),
                insert_key(key_id, tenant_id, AGENT, agent_id, token, now, expires_at),
            ],
            prepare=refuse_taken,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        return schemas.CreatedAgent(agent_id, tenant_id, name, token, key_id, expires_at)

    async def list_agents(self, tenant_id: str) -> list[schemas.Agent]:
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT id, tenant_id, name, created_at FROM agents WHERE tenant_id = ? ORDER BY id",
                tenant_id,
            )
        return [schemas.Agent(**row) for row in rows]

    async def create_approver(
        self, principal: Principal, tenant_id: str, body: schemas.CreateApprover
    ) -> schemas.Approver:
        """Register a wallet address with roles. Raises Unprocessable, Conflict."""
        await self.get_tenant(tenant_id)
        address = checksum_address(body.address, "address")
        if not body.roles:
            raise Unprocessable("an approver needs at least one role", code="invalid_role")
        roles = sorted({check_identifier(role, ROLE, "role") for role in body.roles})
        name = check_name(body.name, "name") if body.name is not None else address
        now = rfc3339(utc_now())

        async def refuse_taken(conn) -> None:
            row = await conn.fetchrow(
                "SELECT 1 AS x FROM approvers WHERE tenant_id = ? AND address = ?", tenant_id, address
            )
            if row is not None:
                raise Conflict(f"approver {address} already exists", code="approver_exists")

        unit = Unit(
            [
                EntryDraft(
                    "approver.added", principal.actor, {"address": address, "roles": roles, "name": name}
                )
            ],
            lambda seqs: [
                (
                    "INSERT INTO approvers (tenant_id, address, roles, name, created_at) VALUES (?, ?, ?, ?, ?)",
                    (tenant_id, address, json.dumps(roles), name, now),
                )
            ],
            prepare=refuse_taken,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        return schemas.Approver(tenant_id, address, roles, name, now)

    async def list_approvers(self, tenant_id: str) -> list[schemas.Approver]:
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT tenant_id, address, roles, name, created_at FROM approvers WHERE tenant_id = ?"
                " ORDER BY address",
                tenant_id,
            )
        return [schemas.Approver(**{**row, "roles": json.loads(row["roles"])}) for row in rows]
