"""API keys: create (token shown once), list, revoke, and rotate an agent's token.

Each change is a ledger `Unit`, so the key rows and their audit entries (`api_key.created`,
`api_key.revoked`, `agent.token_rotated`) commit together; secrets never enter the log.
A revocation takes effect in this process at once (the authentication cache forgets the
key) and in every process at its next commit (the chain writer re-checks each unit's key).
"""

from __future__ import annotations

from typing import Any

from gateway import schemas
from gateway.auth import AGENT, Authenticator, Principal
from gateway.clock import hash_token, new_id, new_token, rfc3339, utc_now
from gateway.errors import AppError, NotFound
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.services.validation import resolve_expiry
from gateway.storage import Conn, Database

_KEY_COLUMNS = "id, role, agent_id, created_at, expires_at, last_used_at, revoked_at"
_INSERT_KEY = (
    "INSERT INTO api_keys (id, tenant_id, role, agent_id, token_hash, created_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def insert_key(
    key_id: str, tenant_id: str, role: str, agent_id: str | None, token: str, now: str, expires_at: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The statement that stores a new key: its token only as a hash."""
    return _INSERT_KEY, (key_id, tenant_id, role, agent_id, hash_token(token), now, expires_at)


class _AlreadyRevoked(AppError):
    """Raised inside a revocation unit when another revocation won the race; nothing to do."""


class CredentialService:
    def __init__(self, db: Database, ledger: Ledger, authenticator: Authenticator) -> None:
        self.db = db
        self.ledger = ledger
        self.authenticator = authenticator

    async def _require_tenant(self, tenant_id: str) -> None:
        async with self.db.read() as conn:
            row = await conn.fetchrow("SELECT 1 AS x FROM tenants WHERE id = ?", tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")

    async def create_api_key(
        self, principal: Principal, tenant_id: str, body: schemas.CreateApiKey
    ) -> schemas.CreatedCredential:
        """Raises NotFound (`tenant_not_found`), Unprocessable (`invalid_expiry`)."""
        now = utc_now()
        expires_at = resolve_expiry(body.expires_at, body.ttl_seconds, now)
        await self._require_tenant(tenant_id)
        key_id, token = new_id("key"), new_token()
        data = {"id": key_id, "role": body.role, "expires_at": expires_at}
        unit = Unit(
            [EntryDraft("api_key.created", principal.actor, data)],
            lambda seqs: [insert_key(key_id, tenant_id, body.role, None, token, rfc3339(now), expires_at)],
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        return schemas.CreatedCredential(key_id, token, body.role, tenant_id, expires_at)

    async def list_api_keys(self, tenant_id: str) -> list[schemas.ApiKey]:
        """Every key of the tenant, revoked ones too, oldest first. Raises NotFound."""
        await self._require_tenant(tenant_id)
        await self.authenticator.usage.flush()  # show this process's latest uses
        async with self.db.read() as conn:
            rows = await conn.fetch(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY id", tenant_id
            )
        return [schemas.ApiKey(**row) for row in rows]

    async def revoke(self, principal: Principal, tenant_id: str, key_id: str) -> None:
        """Revoke a key of the tenant; revoking a revoked key changes nothing.
        Raises NotFound (`tenant_not_found`, `api_key_not_found`)."""
        await self._require_tenant(tenant_id)
        draft = EntryDraft("api_key.revoked", principal.actor, {"id": key_id})

        async def load_key(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT role, agent_id, revoked_at FROM api_keys WHERE tenant_id = ? AND id = ?",
                tenant_id,
                key_id,
            )
            if row is None:
                raise NotFound(f"api key {key_id!r} not found", code="api_key_not_found")
            if row["revoked_at"] is not None:
                raise _AlreadyRevoked(f"api key {key_id!r} is already revoked")
            draft.data.update(role=row["role"], agent_id=row["agent_id"])
            unit.revokes = [key_id]

        now = rfc3339(utc_now())
        unit = Unit(
            [draft],
            lambda seqs: [("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, key_id))],
            prepare=load_key,
            credential=principal.credential,
        )
        try:
            await self.ledger.append(tenant_id, unit)
        except _AlreadyRevoked:
            pass
        self.authenticator.forget([key_id])

    async def rotate_agent_token(
        self, principal: Principal, tenant_id: str, agent_id: str, body: schemas.RotateToken
    ) -> schemas.RotatedToken:
        """Give the agent a new token and revoke every token it had, in one commit.
        Raises NotFound (`tenant_not_found`, `agent_not_found`), Unprocessable (`invalid_expiry`)."""
        now = utc_now()
        expires_at = resolve_expiry(body.expires_at, body.ttl_seconds, now)
        await self._require_tenant(tenant_id)
        key_id, token = new_id("key"), new_token()
        draft = EntryDraft(
            "agent.token_rotated",
            principal.actor,
            {"agent_id": agent_id, "key_id": key_id, "expires_at": expires_at},
        )

        async def load_keys(conn: Conn) -> None:
            agent = await conn.fetchrow(
                "SELECT 1 AS x FROM agents WHERE tenant_id = ? AND id = ?", tenant_id, agent_id
            )
            if agent is None:
                raise NotFound(f"agent {agent_id!r} not found", code="agent_not_found")
            rows = await conn.fetch(
                "SELECT id FROM api_keys WHERE tenant_id = ? AND agent_id = ? AND revoked_at IS NULL ORDER BY id",
                tenant_id,
                agent_id,
            )
            unit.revokes = [row["id"] for row in rows]
            draft.data["revoked_key_ids"] = unit.revokes

        def statements(seqs: list[int]) -> list[tuple[str, tuple[Any, ...]]]:
            writes = [
                ("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (rfc3339(now), revoked))
                for revoked in unit.revokes
            ]
            writes.append(insert_key(key_id, tenant_id, AGENT, agent_id, token, rfc3339(now), expires_at))
            return writes

        unit = Unit([draft], statements, prepare=load_keys, credential=principal.credential)
        await self.ledger.append(tenant_id, unit)
        self.authenticator.forget(unit.revokes)
        return schemas.RotatedToken(key_id, token, agent_id, tenant_id, expires_at, list(unit.revokes))
