"""Bearer tokens: who is calling. Which role may call which route is `gateway.authz`'s table.

Tokens are `vk_` + 256 random bits (`clock.new_token`), stored only as their SHA-256 hash and
found by looking that hash up in a unique index. The lookup is the comparison, and it is safe
against timing: how long it takes depends only on SHA-256(presented token), and learning bits of
a hash of one's own guess says nothing about which token hashes to a stored value (preimage
resistance). A byte-by-byte comparison of the secret itself is what leaks, and none happens.
A slow KDF is not needed either: 256 random bits cannot be guessed offline from a stolen hash.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from crypto.errors import KeyFileError
from crypto.keys import read_secret_file
from gateway.clock import hash_token, parse_rfc3339, rfc3339, utc_now
from gateway.errors import Unauthenticated, Unavailable
from gateway.health import log_failure
from gateway.storage import Database

log = logging.getLogger("verdict.auth")

ADMIN = "admin"
TENANT_ADMIN = "tenant_admin"
AUDITOR = "auditor"
AGENT = "agent"
# Not a key in the database: whoever presents the operator's metrics token (VERDICT_METRICS_TOKEN_FILE)
# may read `GET /metrics` and nothing else.
METRICS = "metrics"
ROLES = (ADMIN, TENANT_ADMIN, AUDITOR, AGENT)

# Routes that opt in (propose, execute) reuse an authentication for this long. That is safe
# because the chain writer re-checks the key of every unit at commit (ledger.Unit.credential).
AUTH_CACHE_SECONDS = 5.0
USAGE_INTERVAL_SECONDS = 60.0
_MAX_CACHED = 10_000

_KEY_QUERY = "SELECT id, role, tenant_id, agent_id, expires_at, revoked_at FROM api_keys WHERE token_hash = ?"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: str
    tenant_id: str | None
    agent_id: str | None
    # False only for the operator's own tools (the demo seed), which act on the database
    # directly, with no token to revoke.
    token_backed: bool = True

    @property
    def credential(self) -> str | None:
        """The key that must still be live when this principal's changes commit."""
        return self.key_id if self.token_backed else None

    @property
    def actor(self) -> str:
        """How audit entries name who did something."""
        if self.role == AGENT:
            return f"agent:{self.agent_id}"
        return f"{self.role}:{self.key_id}"


METRICS_PRINCIPAL = Principal("metrics", METRICS, None, None, token_backed=False)


MIN_METRICS_TOKEN_CHARS = 32


def metrics_token_hash(path: Path | None) -> str | None:
    """The hash of the metrics token in `path` (VERDICT_METRICS_TOKEN_FILE; None when unset).
    Raises KeyFileError for a file that is missing, that others may read, or whose token is
    shorter than MIN_METRICS_TOKEN_CHARS: refusing to start beats serving a guessable token."""
    if path is None:
        return None
    token = read_secret_file(path).decode("utf-8", "replace").strip()
    if len(token) < MIN_METRICS_TOKEN_CHARS:
        raise KeyFileError(
            f"{path}: a metrics token needs at least {MIN_METRICS_TOKEN_CHARS} characters"
            " (`verdict admin metrics-token FILE` writes one)"
        )
    return hash_token(token)


def credential_error(code: str) -> Unauthenticated:
    """The 401 for a key that may not act: `invalid_token` (unknown or revoked) or `token_expired`."""
    if code == "token_expired":
        return Unauthenticated("the token has expired", code="token_expired")
    return Unauthenticated("unknown or revoked token", code="invalid_token")


def bearer_token(authorization: str | None) -> str:
    """Raises Unauthenticated unless the header is `Bearer <token>`."""
    if not authorization:
        raise Unauthenticated("send `Authorization: Bearer <token>`", code="missing_credentials")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send `Authorization: Bearer <token>`", code="missing_credentials")
    return token.strip()


class Authenticator:
    """Turns an `Authorization` header into a Principal. Safe for concurrent use by the tasks
    of one event loop. Revocations made in this process take effect at once (`forget`)."""

    def __init__(self, db: Database, usage: KeyUsage, metrics_token_hash: str | None = None) -> None:
        self.db = db
        self.usage = usage
        self.metrics_token_hash = metrics_token_hash
        # token hash -> (cached until, monotonic; principal; expires at, unix time or None)
        self._cache: dict[str, tuple[float, Principal, float | None]] = {}

    async def authenticate(self, authorization: str | None, *, cached: bool = False) -> Principal:
        """Raises Unauthenticated: `missing_credentials`, `invalid_token` (unknown or revoked),
        `token_expired`. With `cached`, a recent answer may be reused (see AUTH_CACHE_SECONDS)."""
        token_hash = hash_token(bearer_token(authorization))
        if self.metrics_token_hash is not None and hmac.compare_digest(token_hash, self.metrics_token_hash):
            return METRICS_PRINCIPAL
        if cached:
            hit = self._cache.get(token_hash)
            if hit is not None and hit[0] > time.monotonic():
                _, principal, expires = hit
                if expires is not None and time.time() >= expires:
                    raise credential_error("token_expired")
                self.usage.touch(principal.key_id)
                return principal
        async with self.db.read() as conn:
            row = await conn.fetchrow(_KEY_QUERY, token_hash)
        if row is None or row["revoked_at"] is not None:
            raise credential_error("invalid_token")
        expires_at = row["expires_at"]
        if expires_at is not None and expires_at <= rfc3339(utc_now()):
            raise credential_error("token_expired")
        principal = Principal(row["id"], row["role"], row["tenant_id"], row["agent_id"])
        if cached:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            expires = parse_rfc3339(expires_at).timestamp() if expires_at is not None else None
            self._cache[token_hash] = (time.monotonic() + AUTH_CACHE_SECONDS, principal, expires)
        self.usage.touch(principal.key_id)
        return principal

    def forget(self, key_ids: list[str]) -> None:
        """Drop cached authentications of these keys (called after they were revoked)."""
        gone = set(key_ids)
        for token_hash in [h for h, (_, p, _) in self._cache.items() if p.key_id in gone]:
            del self._cache[token_hash]


class KeyUsage:
    """Records when each key was last used, cheaply: at most once per key and
    USAGE_INTERVAL_SECONDS in this process, written by a background task (one batch of
    UPDATEs), never on the request's path. Best effort: a failed write is logged and dropped.
    """

    def __init__(self, db: Database, interval: float = USAGE_INTERVAL_SECONDS) -> None:
        self.db = db
        self.interval = interval
        self._noted: dict[str, float] = {}  # key id -> when this process last recorded it (monotonic)
        self._pending: dict[str, str] = {}  # key id -> time to write
        self._task: asyncio.Task[None] | None = None

    def touch(self, key_id: str) -> None:
        now = time.monotonic()
        noted = self._noted.get(key_id)
        if noted is not None and now - noted < self.interval:
            return
        if len(self._noted) >= 100_000:
            self._noted.clear()
        self._noted[key_id] = now
        self._pending[key_id] = rfc3339(utc_now())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write(), name="key-usage")

    async def flush(self) -> None:
        """Wait until every use noted so far is written (or its write failed)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def _write(self) -> None:
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                rows = [(used, key_id, used) for key_id, used in pending.items()]
                try:
                    async with self.db.transaction() as conn:
                        await conn.executemany(
                            "UPDATE api_keys SET last_used_at = ? WHERE id = ?"
                            " AND (last_used_at IS NULL OR last_used_at < ?)",
                            rows,
                        )
                # a last-used time is a hint for people, not state: never let it fail a request
                except Unavailable:  # an outage: the storage layer logs it once per interval
                    log.debug("could not record the last use of %d key(s): outage", len(rows))
                except Exception:
                    log_failure(log, "could not record the last use of %d key(s)", len(rows))
        finally:
            self._task = None
