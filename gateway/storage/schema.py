"""Schema migrations, written once for both backends.

`{blob}` becomes BLOB (SQLite) or BYTEA (PostgreSQL). Migrations are numbered, applied
in order inside one transaction each, and recorded in `schema_migrations`, so starting
the gateway twice (or several processes at once, on PostgreSQL) applies each exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.storage.base import Conn

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE tenants (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                chain_id BIGINT NOT NULL,
                verifying_contract TEXT NOT NULL,
                active_policy_version BIGINT,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                tenant_id TEXT REFERENCES tenants(id),
                role TEXT NOT NULL,
                agent_id TEXT,
                token_hash TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL,
                revoked_at TEXT
            )""",
            """CREATE TABLE agents (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                id TEXT NOT NULL,
                name TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (tenant_id, id)
            )""",
            """CREATE TABLE approvers (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                address TEXT NOT NULL,
                roles TEXT NOT NULL,
                name TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (tenant_id, address)
            )""",
            """CREATE TABLE policies (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                version BIGINT NOT NULL,
                document TEXT NOT NULL,
                hash TEXT NOT NULL,
                created_at TEXT NOT NULL,
                created_by TEXT NOT NULL,
                PRIMARY KEY (tenant_id, version)
            )""",
            """CREATE TABLE actions (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                agent_id TEXT NOT NULL,
                type TEXT NOT NULL,
                action TEXT NOT NULL,
                action_hash TEXT NOT NULL,
                rationale TEXT,
                metadata TEXT,
                decision TEXT NOT NULL,
                status TEXT NOT NULL,
                reason TEXT NOT NULL,
                matched_rules TEXT NOT NULL,
                policy_version BIGINT,
                policy_hash TEXT,
                approvals_required TEXT,
                approval_expires_at TEXT,
                signed_verdict TEXT,
                audit_event_ids TEXT NOT NULL,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX actions_tenant_id ON actions (tenant_id, id)",
            "CREATE INDEX actions_tenant_agent_id ON actions (tenant_id, agent_id, id)",
            """CREATE TABLE audit_heads (
                tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
                size BIGINT NOT NULL,
                head TEXT NOT NULL
            )""",
            """CREATE TABLE audit_entries (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                seq BIGINT NOT NULL,
                entry {blob} NOT NULL,
                PRIMARY KEY (tenant_id, seq)
            )""",
        ],
    ),
    (
        2,
        [
            # The Merkle tree of each tenant's log, as the hashes of its complete subtrees
            # (audit.tree): (level, idx) covers leaves [idx * 2**level, (idx + 1) * 2**level).
            """CREATE TABLE audit_tree (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                level INTEGER NOT NULL,
                idx BIGINT NOT NULL,
                hash {blob} NOT NULL,
                PRIMARY KEY (tenant_id, level, idx)
            )""",
            # How far the tree is integrated (the size of the latest checkpoint) and its root;
            # its row is what integrating processes lock.
            """CREATE TABLE audit_tree_heads (
                tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
                size BIGINT NOT NULL,
                root {blob} NOT NULL
            )""",
            # Every signed checkpoint: at most one per size, so never two roots for one size.
            """CREATE TABLE audit_checkpoints (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                size BIGINT NOT NULL,
                root {blob} NOT NULL,
                note TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (tenant_id, size)
            )""",
        ],
    ),
    (
        # Credentials (issue 6): optional expiry, a coarse last-used time, and the indexes
        # that listing a tenant's keys and rotating an agent's token read by.
        3,
        [
            "ALTER TABLE api_keys ADD COLUMN expires_at TEXT",
            "ALTER TABLE api_keys ADD COLUMN last_used_at TEXT",
            "CREATE INDEX api_keys_tenant_agent ON api_keys (tenant_id, agent_id)",
        ],
    ),
    (
        # Rate limits and idempotency keys (issue 6). See gateway/ratelimit.py and
        # gateway/services/actions.py. Only the chain writer writes these three tables.
        4,
        [
            # Proposals per minute: an agent's own limit, or its tenant's (agent_id '').
            """CREATE TABLE rate_limits (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                agent_id TEXT NOT NULL,
                propose_per_minute BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, agent_id)
            )""",
            # Proposals committed in the agent's current one-minute window (Unix time // 60).
            """CREATE TABLE rate_windows (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                agent_id TEXT NOT NULL,
                window_start BIGINT NOT NULL,
                proposals BIGINT NOT NULL,
                PRIMARY KEY (tenant_id, agent_id)
            )""",
            # The answer to a proposal made with an `Idempotency-Key`, per agent and key.
            """CREATE TABLE idempotency_keys (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                agent_id TEXT NOT NULL,
                idempotency_key TEXT NOT NULL,
                request_hash TEXT NOT NULL,
                action_id TEXT NOT NULL,
                response TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (tenant_id, agent_id, idempotency_key)
            )""",
            "CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at)",
        ],
    ),
    (
        # Wallet approvals (issue 4). See gateway/services/approvals.py.
        5,
        [
            # The tenant's chain RPC for EIP-1271 contract wallets (may hold an API key: never logged).
            "ALTER TABLE tenants ADD COLUMN rpc_url TEXT",
            # eoa | contract (EIP-1271); a removed approver keeps its row (past approvals stand).
            "ALTER TABLE approvers ADD COLUMN kind TEXT NOT NULL DEFAULT 'eoa'",
            "ALTER TABLE approvers ADD COLUMN removed_at TEXT",
            # The sentence approvers sign (Approval.summary), fixed when the action escalates.
            "ALTER TABLE actions ADD COLUMN summary TEXT",
            # ",cfo,controller,": the roles whose answers count, for listing by role.
            "ALTER TABLE actions ADD COLUMN required_roles TEXT",
            "ALTER TABLE actions ADD COLUMN decided_at TEXT",
            "CREATE INDEX actions_pending ON actions (status, approval_expires_at)",
            # One answer per signer and action: the signature is the credential.
            """CREATE TABLE approvals (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                action_id TEXT NOT NULL,
                signer TEXT NOT NULL,
                role TEXT NOT NULL,
                approve INTEGER NOT NULL,
                kind TEXT NOT NULL,
                signature TEXT NOT NULL,
                digest TEXT NOT NULL,
                comment TEXT,
                signed_at TEXT NOT NULL,
                audit_seq BIGINT NOT NULL,
                PRIMARY KEY (action_id, signer)
            )""",
        ],
    ),
    (
        # Issue 3's policy language in the gateway. See gateway/services/actions.py.
        6,
        [
            # What the decision worked out (JSON; null when the policy has no such feature).
            "ALTER TABLE actions ADD COLUMN risk TEXT",
            "ALTER TABLE actions ADD COLUMN classification TEXT",
            "ALTER TABLE actions ADD COLUMN limits TEXT",
            "ALTER TABLE actions ADD COLUMN context TEXT",
            "ALTER TABLE actions ADD COLUMN checks TEXT",
            # The reason given at proposal time (`reason` changes when an escalation ends).
            "ALTER TABLE actions ADD COLUMN proposed_reason TEXT",
            # action.vendor and the action's decimal amount, as columns for the history context.
            "ALTER TABLE actions ADD COLUMN vendor TEXT",
            "ALTER TABLE actions ADD COLUMN amount TEXT",
            "CREATE INDEX actions_vendor ON actions (tenant_id, vendor, status)",
            "CREATE INDEX actions_agent_created ON actions (tenant_id, agent_id, created_at)",
            # The agent's scope (JSON, policy.load_scope), null: unrestricted.
            "ALTER TABLE agents ADD COLUMN scope TEXT",
            "ALTER TABLE tenants ADD COLUMN timezone TEXT",
            # Bumped by every change of an agent scope or the tenant's time zone: a proposal
            # decided under an older value does not commit (checked under the chain head lock).
            "ALTER TABLE tenants ADD COLUMN config_version BIGINT NOT NULL DEFAULT 0",
            # What each allowed or pending action adds to a limit's bucket; a limit's window total
            # is the sum of the unreleased claims in the window. Rejected, cancelled and expired
            # actions release theirs.
            """CREATE TABLE limit_claims (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                limit_id TEXT NOT NULL,
                bucket TEXT NOT NULL,
                amount TEXT NOT NULL,
                action_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                released_at TEXT
            )""",
            "CREATE INDEX limit_claims_bucket ON limit_claims (tenant_id, limit_id, bucket, created_at)",
            "CREATE INDEX limit_claims_action ON limit_claims (action_id)",
        ],
    ),
    (
        # Issue 15's approver console (gateway/console/): Sign-In with Ethereum nonces, each
        # with the exact message the server issued, and console sessions (token hashes only).
        15,
        [
            """CREATE TABLE console_nonces (
                nonce TEXT PRIMARY KEY,
                address TEXT NOT NULL,
                message TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                used_at TEXT
            )""",
            """CREATE TABLE console_sessions (
                id TEXT PRIMARY KEY,
                token_hash TEXT NOT NULL UNIQUE,
                csrf_token TEXT NOT NULL,
                kind TEXT NOT NULL,
                address TEXT,
                key_id TEXT,
                role TEXT,
                tenant_id TEXT REFERENCES tenants(id),
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                revoked_at TEXT
            )""",
        ],
    ),
]


# PostgreSQL types of the non-text columns that fast-path inserts send as arrays.
COLUMN_TYPES: dict[tuple[str, str], str] = {
    ("actions", "policy_version"): "bigint",
    ("tenants", "chain_id"): "bigint",
    ("tenants", "active_policy_version"): "bigint",
    ("policies", "version"): "bigint",
    ("audit_entries", "seq"): "bigint",
    ("audit_entries", "entry"): "bytea",
}


async def apply_migrations(conn: Conn, *, blob: str) -> list[int]:
    """Apply the migrations `conn`'s database lacks, inside the caller's transaction.

    Returns the versions applied. The caller serializes concurrent starts (SQLite's write
    lock, a PostgreSQL advisory lock), so each migration applies exactly once.
    """
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
    )
    done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for version, statements in MIGRATIONS:
        if version in done:
            continue
        for statement in statements:
            await conn.execute(statement.format(blob=blob))
        await conn.execute(
            "INSERT INTO schema_migrations VALUES (?, ?)", version, datetime.now(UTC).isoformat()
        )
        applied.append(version)
    return applied
