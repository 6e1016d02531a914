"""Tenants, their credentials, agents and approvers."""

from __future__ import annotations

import json

from gateway import schemas
from gateway.auth import AGENT, Principal
from gateway.clock import hash_token, new_id, new_token, rfc3339, utc_now
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.ledger import EntryDraft, Ledger, Unit, create_chain, write_units
from gateway.services.validation import (
    AGENT_ID,
    ROLE,
    TENANT_ID,
    check_identifier,
    check_name,
    checksum_address,
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
                await write_units(conn, body.id, [Unit([draft])], lock=self.db.for_update())
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

    async def create_api_key(
        self, principal: Principal, tenant_id: str, body: schemas.CreateApiKey
    ) -> schemas.CreatedCredential:
        await self.get_tenant(tenant_id)
        key_id, token = new_id("key"), new_token()
        now = rfc3339(utc_now())
        unit = Unit(
            [EntryDraft("api_key.created", principal.actor, {"id": key_id, "role": body.role})],
            lambda seqs: [
                (
                    "INSERT INTO api_keys (id, tenant_id, role, agent_id, token_hash, created_at)"
                    " VALUES (?, ?, ?, NULL, ?, ?)",
                    (key_id, tenant_id, body.role, hash_token(token), now),
                )
            ],
        )
        await self.ledger.append(tenant_id, unit)
        return schemas.CreatedCredential(key_id, token, body.role, tenant_id)

    async def create_agent(
        self, principal: Principal, tenant_id: str, body: schemas.CreateAgent
    ) -> schemas.CreatedAgent:
        """Register an agent and give it a token (shown once). Raises Conflict if the id is taken."""
        await self.get_tenant(tenant_id)
        agent_id = check_identifier(body.id, AGENT_ID, "agent_id") if body.id else new_id("agt")
        name = check_name(body.name, "name") if body.name is not None else agent_id
        key_id, token = new_id("key"), new_token()
        now = rfc3339(utc_now())

        async def refuse_taken(conn) -> None:
            row = await conn.fetchrow(
                "SELECT 1 AS x FROM agents WHERE tenant_id = ? AND id = ?", tenant_id, agent_id
            )
            if row is not None:
                raise Conflict(f"agent {agent_id!r} already exists", code="agent_exists")

        unit = Unit(
            [EntryDraft("agent.created", principal.actor, {"id": agent_id, "name": name, "key_id": key_id})],
            lambda seqs: [
                (
                    "INSERT INTO agents (tenant_id, id, name, created_at) VALUES (?, ?, ?, ?)",
                    (tenant_id, agent_id, name, now),
                ),
                (
                    "INSERT INTO api_keys (id, tenant_id, role, agent_id, token_hash, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key_id, tenant_id, AGENT, agent_id, hash_token(token), now),
                ),
            ],
            prepare=refuse_taken,
        )
        await self.ledger.append(tenant_id, unit)
        return schemas.CreatedAgent(agent_id, tenant_id, name, token)

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
