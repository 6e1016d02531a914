"""Bearer-token authentication and the role checks of each route.

Tokens are looked up by their SHA-256 hash (the stored form); a 256-bit random token
cannot be guessed, and looking up a hash leaks nothing about the token's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.clock import hash_token
from gateway.errors import Forbidden, NotFound, Unauthenticated
from gateway.storage import Database

ADMIN = "admin"
TENANT_ADMIN = "tenant_admin"
AUDITOR = "auditor"
AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: str
    tenant_id: str | None
    agent_id: str | None

    @property
    def actor(self) -> str:
        """How audit entries name who did something."""
        if self.role == AGENT:
            return f"agent:{self.agent_id}"
        return f"{self.role}:{self.key_id}"


def bearer_token(authorization: str | None) -> str:
    """Raises Unauthenticated unless the header is `Bearer <token>`."""
    if not authorization:
        raise Unauthenticated("send `Authorization: Bearer <token>`", code="missing_credentials")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send `Authorization: Bearer <token>`", code="missing_credentials")
    return token.strip()


async def authenticate(db: Database, authorization: str | None) -> Principal:
    """Raises Unauthenticated for a missing, unknown or revoked token."""
    token = bearer_token(authorization)
    async with db.read() as conn:
        row = await conn.fetchrow(
            "SELECT id, role, tenant_id, agent_id FROM api_keys WHERE token_hash = ? AND revoked_at IS NULL",
            hash_token(token),
        )
    if row is None:
        raise Unauthenticated("unknown or revoked token", code="invalid_token")
    return Principal(key_id=row["id"], role=row["role"], tenant_id=row["tenant_id"], agent_id=row["agent_id"])


def require_tenant_role(principal: Principal, tenant_id: str, *roles: str) -> None:
    """Allow `roles` within `tenant_id` (the admin counts when listed).

    A credential of another tenant gets 404, never 403, so a tenant's existence does not
    leak (DESIGN invariant 8). A role never allowed here gets 403.
    """
    if principal.role == ADMIN:
        if ADMIN in roles:
            return
        raise Forbidden("the admin token manages tenants; use a tenant credential", code="forbidden_role")
    if principal.tenant_id != tenant_id:
        raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")
    if principal.role not in roles:
        raise Forbidden(f"role {principal.role!r} may not do this", code="forbidden_role")


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"role {principal.role!r} may not do this", code="forbidden_role")
