"""The bootstrap admin token: created once per database, by the first host to start on it.

The token lives in that host's `<data dir>/admin.token` (mode 0600, never printed); the database
keeps its SHA-256 (`api_keys` row `key_admin`). Later starts, on any host, neither create another
nor replace the stored hash, so starting a host never revokes another's token. Only
`verdict keys admin-token --reset` (`reset_admin_token`) replaces it.
"""

from __future__ import annotations

from pathlib import Path

from gateway.clock import hash_token, new_token, rfc3339, utc_now
from gateway.keyring import ADMIN_TOKEN_FILE, read_admin_token, write_admin_token
from gateway.storage import Database
from gateway.storage.base import Conn

ADMIN_KEY_ID = "key_admin"


async def install_admin_token(conn: Conn, data_dir: Path, created: list[str]) -> str | None:
    """Inside the caller's transaction (which holds the key set's lock, so concurrent first starts
    create one token): the token this host holds, creating it when the database has none; None
    when another host holds it. Never replaces the database's token. Raises `KeyFileError` for an
    `admin.token` others can read."""
    row = await conn.fetchrow("SELECT token_hash FROM api_keys WHERE id = ?", ADMIN_KEY_ID)
    local = read_admin_token(data_dir)
    if row is None:
        if local is None:
            local = write_admin_token(data_dir)
            created.append("admin_token")
        await _insert_admin(conn, local)
        return local
    return local if local is not None and hash_token(local) == row["token_hash"] else None


async def _insert_admin(conn: Conn, token: str) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, role, agent_id, token_hash, created_at)"
        " VALUES (?, NULL, 'admin', NULL, ?, ?)",
        ADMIN_KEY_ID,
        hash_token(token),
        rfc3339(utc_now()),
    )


async def reset_admin_token(db: Database, data_dir: Path) -> Path:
    """Make a new bootstrap admin token the only one (the old one stops working on every host),
    then write it to `data_dir`/admin.token. Returns the file's path. Raises what the database
    raises (nothing changed then) or `KeyFileError` when the file cannot be written (run it again)."""
    token = new_token()
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO api_keys (id, tenant_id, role, agent_id, token_hash, created_at)"
            " VALUES (?, NULL, 'admin', NULL, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, revoked_at = NULL",
            ADMIN_KEY_ID,
            hash_token(token),
            rfc3339(utc_now()),
        )
    write_admin_token(data_dir, token)
    return data_dir / ADMIN_TOKEN_FILE
