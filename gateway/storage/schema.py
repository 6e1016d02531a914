"""Schema migrations, written once for both backends.

`{blob}` becomes BLOB (SQLite) or BYTEA (PostgreSQL); a step SQLite cannot take (changing a
primary key) is written for each backend (`PerDialect`). Migrations are numbered, applied
in order inside one transaction each, and recorded in `schema_migrations`, so starting
the gateway twice (or several processes at once, on PostgreSQL) applies each exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.storage.distribution import TENANT_KEYS, PerDialect

if TYPE_CHECKING:
    from gateway.storage.base import Conn

MIGRATIONS: list[tuple[int, list[str] | PerDialect]] = [
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
        # Keys across hosts (issue 11, item 3). See gateway/services/published_keys.py.
        7,
        [
            # Every signing key of the deployment, with the window it is in force for (NULL
            # not_before: published during a rotation, not scheduled yet) and, when the hosts share
            # a key-encryption key, the private key sealed under it (gateway/sealing.py).
            """CREATE TABLE signing_keys (
                kind TEXT NOT NULL,
                public TEXT NOT NULL,
                not_before TEXT,
                not_after TEXT,
                sealed {blob},
                published_at TEXT NOT NULL,
                PRIMARY KEY (kind, public)
            )""",
            # One row: the lock that starts and rotations take, and a version running gateways poll.
            "CREATE TABLE key_set (id INTEGER PRIMARY KEY, version BIGINT NOT NULL, updated_at TEXT NOT NULL)",
            "INSERT INTO key_set (id, version, updated_at) VALUES (1, 0, '')",
        ],
    ),
    (
        # Issue 11: while a write failed (a full disk, a lost database), `/health` writes here to
        # notice the recovery by itself (gateway.storage.base.StorageHealth). One row per host.
        8,
        [
            "CREATE TABLE storage_probes (host TEXT PRIMARY KEY, written_at TEXT NOT NULL)",
        ],
    ),
    (
        # Issue 11: the per-address limit of the public routes holds for the whole deployment
        # (gateway/services/address_limits.py): requests per client address and fixed window,
        # added up by every process. Rows older than the previous window are deleted.
        10,
        [
            """CREATE TABLE address_windows (
                window_start BIGINT NOT NULL,
                address TEXT NOT NULL,
                requests BIGINT NOT NULL,
                PRIMARY KEY (window_start, address)
)""",
        ],
    ),
    (
        # Executions on rails (issue 12). See gateway/services/executions.py and gateway/rails/.
        12,
        [
            # One row per execution. `live` is 1 until the execution fails (then NULL): the unique
            # index allows at most one execution per action that has not failed (NULLs are distinct
            # in both backends). `due_at` is when the executor should next take it up (NULL: idle);
            # `lease_owner`/`lease_until` say which executor holds it until when.
            """CREATE TABLE executions (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                id TEXT NOT NULL,
                action_id TEXT NOT NULL,
                rail TEXT NOT NULL,
                rail_kind TEXT NOT NULL,
                status TEXT NOT NULL,
                live INTEGER,
                requested_by TEXT NOT NULL,
                verdict_digest TEXT NOT NULL,
                verdict_expires_at TEXT NOT NULL,
                reference TEXT,
                result TEXT,
                code TEXT,
                message TEXT,
                attempts BIGINT NOT NULL DEFAULT 0,
                due_at TEXT,
                lease_owner TEXT,
                lease_until TEXT,
                rollback_status TEXT,
                rollback_reason TEXT,
                rollback_by TEXT,
                rollback_reference TEXT,
                audit_event_ids TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                submitted_at TEXT,
                finished_at TEXT,
                rolled_back_at TEXT,
                PRIMARY KEY (tenant_id, id)
            )""",
            "CREATE UNIQUE INDEX executions_one_live ON executions (tenant_id, action_id, live)",
            "CREATE INDEX executions_action ON executions (tenant_id, action_id, created_at)",
            "CREATE INDEX executions_due ON executions (due_at)",
            # Per-tenant rail configurations. `secrets` is the AES-GCM ciphertext of the secret
            # fields (gateway/rails/secrets.py: the key lives in the data dir, not here);
            # `secret_hashes` their SHA-256, which is all the API and the audit log ever show.
            """CREATE TABLE rails (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                config TEXT NOT NULL,
                secrets {blob} NOT NULL,
                secret_hashes TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (tenant_id, name)
)""",
        ],
    ),
    (
        # Standard Webhooks delivery (issue 14). See gateway/events/webhooks.py and delivery.py.
        14,
        [
            # An endpoint (kind 'endpoint', made by a tenant admin) or a proposal's callback_url
            # (kind 'callback', one action's events, seen as its agent sees them). Secrets are
            # sealed (gateway.events.webhook_secrets); a callback signs with its tenant's secret.
            # `delivered_through`: the last seq passed (delivered, or not for this webhook);
            # `attempts`/`due_ms`/`failing_since`: the failures of the event after it;
            # `lease_owner`/`lease_until_ms`: which worker delivers it now.
            """CREATE TABLE webhooks (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                kind TEXT NOT NULL,
                url TEXT NOT NULL,
                types TEXT,
                action_id TEXT,
                agent_id TEXT,
                secret TEXT,
                previous_secret TEXT,
                previous_until TEXT,
                enabled INTEGER NOT NULL,
                disabled_reason TEXT,
                delivered_through BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                due_ms BIGINT NOT NULL DEFAULT 0,
                failing_since TEXT,
                lease_owner TEXT,
                lease_until_ms BIGINT NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX webhooks_tenant ON webhooks (tenant_id, kind, id)",
            "CREATE INDEX webhooks_due ON webhooks (enabled, due_ms)",
            """CREATE TABLE webhook_deliveries (
                id TEXT PRIMARY KEY,
                webhook_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                attempt INTEGER NOT NULL,
                status_code INTEGER,
                latency_ms INTEGER NOT NULL,
                error TEXT,
                attempted_at TEXT NOT NULL
            )""",
            "CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id)",
            "CREATE INDEX webhook_deliveries_attempted ON webhook_deliveries (attempted_at)",
            # The tenant's default secret (callbacks sign with it), revealed once.
            """CREATE TABLE webhook_tenant_secrets (
                tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
                secret TEXT NOT NULL,
                previous_secret TEXT,
                previous_until TEXT,
                revealed_at TEXT,
                created_at TEXT NOT NULL
            )""",
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
    (
        # One secrets key per deployment (gateway/services/secrets_key.py): with a key-encryption
        # key, the key that seals rail API keys and webhook secrets, sealed under it, one row a
        # feature (the same key for both, unless a host adopted an older per-feature key file).
        16,
        [
            """CREATE TABLE secret_keys (
                feature TEXT PRIMARY KEY,
                sealed {blob} NOT NULL,
                created_at TEXT NOT NULL
            )""",
        ],
    ),
    (
        # What a rail answered for the agent (an x402 resource's body, size-limited by the rail),
        # beside its execution: GET /v1/executions/{id}/result. The log holds its SHA-256.
        17,
        [
            """CREATE TABLE execution_results (
                tenant_id TEXT NOT NULL,
                execution_id TEXT NOT NULL,
                content_type TEXT NOT NULL,
                body {blob} NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (tenant_id, execution_id)
            )""",
        ],
    ),
    (
        # Checkpoints published under the witness policy (gateway/services/witnessing.py): the
        # log's signed checkpoint with the witnesses' cosignatures appended, once they met the quorum.
        20,
        [
            """CREATE TABLE audit_witnessed (
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
        # An agent's `require_approval` on propose (1 when asked, else NULL): approvers see it.
        22,
        ["ALTER TABLE actions ADD COLUMN require_approval INTEGER"],
    ),
    (
        # Distributable by tenant (issue 16, gateway/storage/distribution.py): `tenant_id` in the
        # primary key of actions, approvals, webhooks, webhook deliveries and limit claims; no
        # foreign key from the credential directories (api_keys, console_sessions) to tenants.
        23,
        TENANT_KEYS,
    ),
]


# PostgreSQL types of the non-text columns that fast-path inserts send as arrays.
COLUMN_TYPES: dict[tuple[str, str], str] = {
    ("actions", "policy_version"): "bigint",
    ("actions", "require_approval"): "integer",
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
        if isinstance(statements, PerDialect):
            statements = statements.sqlite if conn.dialect == "sqlite" else statements.postgresql
        for statement in statements:
            await conn.execute(statement.format(blob=blob))
        await conn.execute(
            "INSERT INTO schema_migrations VALUES (?, ?)", version, datetime.now(UTC).isoformat()
        )
        applied.append(version)
    return applied
