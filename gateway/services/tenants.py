"""Tenants, their agents and approvers (API keys: `services.credentials`)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

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

MAX_CHAIN_ID = 2**53 - 1
_TENANT_COLUMNS = "id, name, chain_id, verifying_contract, active_policy_version, created_at"
_APPROVER_COLUMNS = "tenant_id, address, roles, name, created_at, kind, removed_at"


def check_rpc_url(url: str | None) -> str | None:
    """An http(s) URL of at most 2048 characters, or None. Raises Unprocessable (`invalid_rpc_url`)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise Unprocessable("rpc_url must be an http or https URL", code="invalid_rpc_url", field="rpc_url")
    return url


def check_timezone(name: str | None) -> str | None:
    """An IANA time zone name such as `America/New_York`, or None. Raises Unprocessable (`invalid_timezone`)."""
    if name is None:
        return None
    try:
        if not 0 < len(name) <= 64 or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise Unprocessable(
            "timezone must be an IANA time zone name such as America/New_York",
            code="invalid_timezone",
            field="timezone",
        ) from exc
    return name


def rpc_endpoint(url: str | None) -> str | None:
    """What may be shown and logged of an RPC URL: scheme://host[:port]. Its user, path and
    query often hold a provider's API key."""
    if url is None:
        return None
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _tenant(row: dict) -> schemas.Tenant:
    return schemas.Tenant(
        row["id"], row["name"], int(row["chain_id"]), row["verifying_contract"],
        row["active_policy_version"], row["created_at"], rpc_endpoint(row["rpc_url"]), row["timezone"],
    )  # fmt: skip


def _approver(row: dict) -> schemas.Approver:
    return schemas.Approver(**{**row, "roles": json.loads(row["roles"])})


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
        # At most 2**53 - 1: the typed data logged with every verdict and approval carries it, and
        # RFC 8785 JSON holds integers exactly only up to there.
        if not 0 < body.chain_id <= MAX_CHAIN_ID:
            raise Unprocessable(
                f"chain_id must be a positive EIP-155 chain id up to {MAX_CHAIN_ID}", code="invalid_chain_id"
            )
        contract = checksum_address(body.verifying_contract, "verifying_contract")
        rpc_url = check_rpc_url(body.rpc_url)
        timezone = check_timezone(body.timezone)
        now = rfc3339(utc_now())
        tenant = schemas.Tenant(
            body.id, body.name, body.chain_id, contract, None, now, rpc_endpoint(rpc_url), timezone
        )
        data = {"id": body.id, "name": body.name, "chain_id": body.chain_id, "verifying_contract": contract}
        if rpc_url is not None:
            data["rpc_endpoint"] = rpc_endpoint(rpc_url)
        if timezone is not None:
            data["timezone"] = timezone
        draft = EntryDraft("tenant.created", principal.actor, data)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    f"INSERT INTO tenants ({_TENANT_COLUMNS}, rpc_url, timezone) VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
                    body.id,
                    body.name,
                    body.chain_id,
                    contract,
                    now,
                    rpc_url,
                    timezone,
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
            row = await conn.fetchrow(
                f"SELECT {_TENANT_COLUMNS}, rpc_url, timezone FROM tenants WHERE id = ?", tenant_id
            )
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
        return _tenant(row)

    async def update_tenant(
        self, principal: Principal, tenant_id: str, body: schemas.UpdateTenant
    ) -> schemas.Tenant:
        """Set or clear the chain RPC URL and the time zone (audited as `tenant.updated`, with the
        RPC URL's endpoint only). A new time zone applies to every proposal committed after it
        (it bumps the tenant's configuration version, like an agent scope)."""
        await self.get_tenant(tenant_id)
        data: dict[str, str | None] = {}
        writes: list[tuple[str, tuple]] = []
        if body.rpc_url is not msgspec.UNSET:
            rpc_url = check_rpc_url(body.rpc_url)
            data["rpc_endpoint"] = rpc_endpoint(rpc_url)
            writes.append(("UPDATE tenants SET rpc_url = ? WHERE id = ?", (rpc_url, tenant_id)))
        if body.timezone is not msgspec.UNSET:
            timezone = check_timezone(body.timezone)
            data["timezone"] = timezone
            writes.append(
                (
                    "UPDATE tenants SET timezone = ?, config_version = config_version + 1 WHERE id = ?",
                    (timezone, tenant_id),
                )
            )
        if not writes:
            return await self.get_tenant(tenant_id)
        unit = Unit(
            [EntryDraft("tenant.updated", principal.actor, data)],
            lambda seqs: writes,
            bumps_config=body.timezone is not msgspec.UNSET,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        return await self.get_tenant(tenant_id)

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
        """Register a wallet address with roles (or bring back a removed one). Raises
        Unprocessable, Conflict (`approver_exists`)."""
        await self.get_tenant(tenant_id)
        address = checksum_address(body.address, "address")
        roles = _check_roles(body.roles)
        name = check_name(body.name, "name") if body.name is not None else address
        now = rfc3339(utc_now())
        existing: dict = {}

        async def refuse_taken(conn) -> None:
            existing.clear()
            row = await conn.fetchrow(
                "SELECT removed_at FROM approvers WHERE tenant_id = ? AND address = ?", tenant_id, address
            )
            if row is not None and row["removed_at"] is None:
                raise Conflict(f"approver {address} already exists", code="approver_exists")
            existing.update(row or {})

        def writes(seqs: list[int]) -> list:
            if existing:  # removed before: the same address comes back with its new roles
                return [
                    (
                        "UPDATE approvers SET roles = ?, name = ?, kind = ?, created_at = ?, removed_at = NULL"
                        " WHERE tenant_id = ? AND address = ?",
                        (json.dumps(roles), name, body.kind, now, tenant_id, address),
                    )
                ]
            return [
                (
                    f"INSERT INTO approvers ({_APPROVER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    (tenant_id, address, json.dumps(roles), name, now, body.kind),
                )
            ]

        entry = {"address": address, "roles": roles, "name": name, "kind": body.kind}
        unit = Unit(
            [EntryDraft("approver.added", principal.actor, entry)],
            writes,
            prepare=refuse_taken,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        return schemas.Approver(tenant_id, address, roles, name, now, body.kind)

    async def update_approver(
        self, principal: Principal, tenant_id: str, address: str, body: schemas.UpdateApprover
    ) -> schemas.Approver:
        """Change an approver's roles or name (audited as `approver.changed`). Approvals already
        given stand. Raises NotFound (`approver_not_found`), Unprocessable."""
        await self.get_tenant(tenant_id)
        address = checksum_address(address, "address")
        roles = _check_roles(body.roles) if body.roles is not None else None
        name = check_name(body.name, "name") if body.name is not None else None
        change = {key: value for key, value in (("roles", roles), ("name", name)) if value is not None}
        if not change:
            raise Unprocessable("give roles, name or both", code="nothing_to_change")
        unit = Unit(
            [EntryDraft("approver.changed", principal.actor, {"address": address, **change})],
            lambda seqs: [
                (
                    f"UPDATE approvers SET {', '.join(f'{key} = ?' for key in change)}"
                    " WHERE tenant_id = ? AND address = ?",
                    (*(json.dumps(v) if k == "roles" else v for k, v in change.items()), tenant_id, address),
                )
            ],
            prepare=lambda conn: self._require_approver(conn, tenant_id, address),
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        return await self.get_approver(tenant_id, address)

    async def remove_approver(self, principal: Principal, tenant_id: str, address: str) -> schemas.Approver:
        """Remove an approver: no new approvals from them; those already given stand (audited as
        `approver.removed`). Raises NotFound (`approver_not_found`)."""
        await self.get_tenant(tenant_id)
        address = checksum_address(address, "address")
        now = rfc3339(utc_now())
        unit = Unit(
            [EntryDraft("approver.removed", principal.actor, {"address": address})],
            lambda seqs: [
                (
                    "UPDATE approvers SET removed_at = ? WHERE tenant_id = ? AND address = ?",
                    (now, tenant_id, address),
                )
            ],
            prepare=lambda conn: self._require_approver(conn, tenant_id, address),
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        return await self.get_approver(tenant_id, address)

    @staticmethod
    async def _require_approver(conn, tenant_id: str, address: str) -> None:
        row = await conn.fetchrow(
            "SELECT removed_at FROM approvers WHERE tenant_id = ? AND address = ?", tenant_id, address
        )
        if row is None or row["removed_at"] is not None:
            raise NotFound(f"approver {address} not found", code="approver_not_found")

    async def get_approver(self, tenant_id: str, address: str) -> schemas.Approver:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {_APPROVER_COLUMNS} FROM approvers WHERE tenant_id = ? AND address = ?",
                tenant_id,
                address,
            )
        if row is None:
            raise NotFound(f"approver {address} not found", code="approver_not_found")
        return _approver(row)

    async def list_approvers(self, tenant_id: str, *, removed: bool = False) -> list[schemas.Approver]:
        """The tenant's approvers by address; removed ones too when `removed`."""
        where = "" if removed else " AND removed_at IS NULL"
        async with self.db.read() as conn:
            rows = await conn.fetch(
                f"SELECT {_APPROVER_COLUMNS} FROM approvers WHERE tenant_id = ?{where} ORDER BY address",
                tenant_id,
            )
        return [_approver(row) for row in rows]


def _check_roles(roles: list[str]) -> list[str]:
    if not roles:
        raise Unprocessable("an approver needs at least one role", code="invalid_role")
    return sorted({check_identifier(role, ROLE, "role") for role in roles})
