"""Console sessions: who is signed in to the approver console, for which tenant, until when.

Two ways in. An approver signs the server's Sign-In with Ethereum message (`gateway.console.siwe`)
with their wallet; a tenant admin or auditor exchanges their API token once for a read-only
session. Either way the browser gets a session token (256 random bits, stored only as its
SHA-256 hash, like API tokens) in an HttpOnly SameSite=Strict cookie, plus a CSRF token the
page sends back in a header on every state change. A session is bound to one tenant (an
address that approves in several picks one after signing in), lasts SESSION_TTL, and ends at
once on sign-out, when the approver is removed, or when the API key it came from is revoked.
Sign-ins and sign-outs are audit entries of the tenant (`console.signed_in`, `console.signed_out`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from crypto.eip1271 import check_contract_signature
from crypto.errors import ContractSignerUnavailable
from gateway.auth import AUDITOR, TENANT_ADMIN, Authenticator, Principal
from gateway.clock import new_id, rfc3339, utc_now
from gateway.console import siwe
from gateway.errors import Forbidden, NotFound, Unauthenticated
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.services.signatures import RPC_TIMEOUT_SECONDS, SignerUnavailable
from gateway.services.validation import checksum_address
from gateway.storage import Database

SESSION_TTL = timedelta(hours=8)
WALLET, TOKEN = "wallet", "token"
_SESSION_COLUMNS = "id, csrf_token, kind, address, key_id, role, tenant_id, expires_at, revoked_at"


class SignInRefused(Forbidden):
    code = "sign_in_refused"


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    kind: str
    csrf_token: str
    tenant_id: str | None
    address: str | None = None  # wallet sessions
    key_id: str | None = None  # token sessions
    role: str | None = None  # token sessions: tenant_admin or auditor
    roles: list[str] = field(default_factory=list)  # wallet sessions: the approver's roles
    choices: list[str] = field(default_factory=list)  # wallet sessions not yet bound: their tenants

    @property
    def read_only(self) -> bool:
        return self.kind == TOKEN

    @property
    def actor(self) -> str:
        return f"approver:{self.address}" if self.kind == WALLET else f"{self.role}:{self.key_id}"

    def reader(self) -> Principal:
        """A read-only principal of the session's tenant, for the services' read paths."""
        return Principal(f"console:{self.id}", AUDITOR, self.tenant_id, None, token_backed=False)


class ConsoleSessions:
    """Safe for concurrent use by the tasks of one event loop; all state is in the database."""

    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        authenticator: Authenticator,
        *,
        rpc_timeout: float = RPC_TIMEOUT_SECONDS,
    ) -> None:
        self.db, self.ledger, self.authenticator, self.rpc_timeout = db, ledger, authenticator, rpc_timeout

    async def challenge(self, domain: str, uri: str, address: object, chain_id: object) -> siwe.SignInMessage:
        """Issue and store a sign-in message. Raises Unprocessable (`invalid_address`),
        InvalidSignIn (chain id)."""
        checked = checksum_address(address if isinstance(address, str) else None, "address")
        message = siwe.sign_in_message(domain, uri, checked, siwe.check_chain_id(chain_id), utc_now())
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO console_nonces (nonce, address, message, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                message.nonce,
                checked,
                message.text,
                rfc3339(message.issued_at),
                rfc3339(message.expires_at),
            )
        return message

    async def sign_in(self, nonce: object, signature_text: object) -> tuple[str, ConsoleSession]:
        """Verify the signature over the stored message of `nonce` (used up whatever the outcome)
        and open a session. Returns (session token, session). Raises InvalidSignIn (unknown,
        used or expired nonce; bad signature), SignInRefused (not an approver anywhere),
        SignerUnavailable (a contract wallet's chain could not be asked)."""
        nonce = siwe.check_nonce(nonce)
        signature = siwe.parse_signature(signature_text)
        row = await self._use_nonce(nonce)
        digest = siwe.personal_message_digest(row["message"])
        address = row["address"]
        candidates = await self._approver_tenants(address)
        if siwe.recover_or_none(digest, signature) == address:
            tenants = [c["tenant_id"] for c in candidates]
        else:
            tenants = await self._contract_tenants(candidates, address, digest, signature)
            if not tenants and not any(c["kind"] == "contract" for c in candidates):
                raise siwe.InvalidSignIn(f"the signature is not {address}'s over the sign-in message")
        if not tenants:
            raise SignInRefused(f"{address} is not an approver of any tenant")
        token, session = await self._open(WALLET, tenant_id=None, address=address)
        if len(tenants) == 1:
            session = await self.bind(session, tenants[0])
        return token, session

    async def exchange_token(self, api_token: object) -> tuple[str, ConsoleSession]:
        """A read-only session for a tenant admin's or auditor's API token. Raises
        Unauthenticated (`invalid_token`, `token_expired`), SignInRefused (another role)."""
        if not isinstance(api_token, str) or not api_token.strip():
            raise Unauthenticated("give an API token", code="missing_credentials")
        principal = await self.authenticator.authenticate(f"Bearer {api_token.strip()}")
        if principal.role not in (TENANT_ADMIN, AUDITOR) or principal.tenant_id is None:
            raise SignInRefused("only a tenant admin's or an auditor's token opens the console")
        token, session = await self._open(
            TOKEN, tenant_id=principal.tenant_id, key_id=principal.key_id, role=principal.role
        )
        await self._audit(session, "console.signed_in", principal.tenant_id, principal.credential)
        return token, session

    async def bind(self, session: ConsoleSession, tenant_id: str) -> ConsoleSession:
        """Bind a wallet session to one tenant where its address is an active approver
        (audited as `console.signed_in`). Raises NotFound (`tenant_not_found`)."""
        if session.tenant_id is not None or session.address is None:
            raise SignInRefused("this session is already bound to a tenant")
        allowed = {c["tenant_id"] for c in await self._approver_tenants(session.address)}
        if tenant_id not in allowed:
            raise NotFound(f"tenant {tenant_id!r} not found", code="tenant_not_found")

        def writes(seqs: list[int]) -> list[Any]:
            return [
                (
                    "UPDATE console_sessions SET tenant_id = ? WHERE id = ? AND tenant_id IS NULL",
                    (tenant_id, session.id),
                )
            ]

        entry = {"session": session.id, "method": "siwe", "address": session.address}
        await self.ledger.append(
            tenant_id, Unit([EntryDraft("console.signed_in", session.actor, entry)], writes)
        )
        return ConsoleSession(
            session.id,
            session.kind,
            session.csrf_token,
            tenant_id,
            session.address,
            roles=await self._roles(session),
        )

    async def lookup(self, token: str | None) -> ConsoleSession | None:
        """The live session of a cookie value, or None (unknown, expired, revoked; an approver
        since removed, an API key since revoked)."""
        if not token:
            return None
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {_SESSION_COLUMNS} FROM console_sessions WHERE token_hash = ?",
                hash_session_token(token),
            )
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= rfc3339(utc_now()):
            return None
        session = ConsoleSession(
            row["id"],
            row["kind"],
            row["csrf_token"],
            row["tenant_id"],
            row["address"],
            row["key_id"],
            row["role"],
        )
        if session.kind == TOKEN:
            async with self.db.read() as conn:
                key = await conn.fetchrow(
                    "SELECT revoked_at, expires_at FROM api_keys WHERE id = ?", session.key_id
                )
            live = key is not None and key["revoked_at"] is None
            return (
                session
                if live and (key["expires_at"] is None or key["expires_at"] > rfc3339(utc_now()))
                else None
            )
        tenants = [c["tenant_id"] for c in await self._approver_tenants(session.address)]
        if session.tenant_id is None:
            return ConsoleSession(**{**_fields(session), "choices": tenants}) if tenants else None
        if session.tenant_id not in tenants:
            return None
        return ConsoleSession(**{**_fields(session), "roles": await self._roles(session)})

    async def sign_out(self, session: ConsoleSession) -> None:
        """Revoke the session now (audited as `console.signed_out` when it had a tenant)."""
        now = rfc3339(utc_now())
        statement = (
            "UPDATE console_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (now, session.id),
        )
        if session.tenant_id is None:
            async with self.db.transaction() as conn:
                await conn.execute(statement[0], *statement[1])
            return
        await self._audit(session, "console.signed_out", session.tenant_id, None, statement)

    async def _audit(
        self, session: ConsoleSession, kind: str, tenant_id: str, credential: str | None, *extra: Any
    ) -> None:
        method = "siwe" if session.kind == WALLET else "api_token"
        entry = {"session": session.id, "method": method}
        unit = Unit([EntryDraft(kind, session.actor, entry)], lambda seqs: list(extra), credential=credential)
        await self.ledger.append(tenant_id, unit)

    async def _open(self, kind: str, **columns: Any) -> tuple[str, ConsoleSession]:
        token = "vcs_" + secrets.token_urlsafe(32)
        session_id, csrf = new_id("cs"), secrets.token_urlsafe(32)
        now = utc_now()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO console_sessions (id, token_hash, csrf_token, kind, address, key_id, role, tenant_id,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                session_id,
                hash_session_token(token),
                csrf,
                kind,
                columns.get("address"),
                columns.get("key_id"),
                columns.get("role"),
                columns.get("tenant_id"),
                rfc3339(now),
                rfc3339(now + SESSION_TTL),
            )
        return token, ConsoleSession(
            session_id,
            kind,
            csrf,
            columns.get("tenant_id"),
            columns.get("address"),
            columns.get("key_id"),
            columns.get("role"),
        )

    async def _use_nonce(self, nonce: str) -> dict[str, Any]:
        """Mark the nonce used and return its row. Raises InvalidSignIn when unknown, used or expired."""
        now = rfc3339(utc_now())
        async with self.db.transaction() as conn:
            lock = " FOR UPDATE" if conn.dialect == "postgresql" else ""  # SQLite: BEGIN IMMEDIATE serializes
            row = await conn.fetchrow(
                f"SELECT address, message, expires_at, used_at FROM console_nonces WHERE nonce = ?{lock}",
                nonce,
            )
            if row is None or row["used_at"] is not None:
                raise siwe.InvalidSignIn("this sign-in message is unknown or was already used; sign in again")
            await conn.execute("UPDATE console_nonces SET used_at = ? WHERE nonce = ?", now, nonce)
        if row["expires_at"] <= now:
            raise siwe.InvalidSignIn("this sign-in message has expired; sign in again")
        return row

    async def _approver_tenants(self, address: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await conn.fetch(
                "SELECT a.tenant_id, a.kind, t.rpc_url FROM approvers a JOIN tenants t ON t.id = a.tenant_id"
                " WHERE a.address = ? AND a.removed_at IS NULL ORDER BY a.tenant_id",
                address,
            )

    async def _contract_tenants(
        self, candidates: list[dict[str, Any]], address: str, digest: bytes, signature: bytes
    ) -> list[str]:
        """EIP-1271: the tenants where `address` is a contract approver that accepts the signature
        through the tenant's RPC. Raises SignerUnavailable when a chain could not be asked."""
        accepted = []
        for candidate in candidates:
            if candidate["kind"] != "contract" or candidate["rpc_url"] is None:
                continue
            try:
                valid = await check_contract_signature(
                    candidate["rpc_url"], address, digest, signature, timeout=self.rpc_timeout
                )
            except ContractSignerUnavailable as exc:
                raise SignerUnavailable(f"the contract wallet {address} could not be asked: {exc}") from None
            if valid:
                accepted.append(candidate["tenant_id"])
        return accepted

    async def _roles(self, session: ConsoleSession) -> list[str]:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT roles FROM approvers WHERE tenant_id = ? AND address = ? AND removed_at IS NULL",
                session.tenant_id,
                session.address,
            )
        return sorted(json.loads(row["roles"])) if row else []


def _fields(session: ConsoleSession) -> dict[str, Any]:
    return {name: getattr(session, name) for name in ConsoleSession.__slots__}
