"""How the schema distributes by tenant on a distributed PostgreSQL (Citus), and migration 23.

Every tenant's data is independent, so every table holding it is keyed by `tenant_id` (the
tenant's own row by `id`): the column is in its primary key, in every unique index and in every
foreign key, and the table is distributed by it, all colocated. The tables listed in
`REFERENCE_TABLES` hold no tenant's data, or are directories looked up before the tenant is
known; they are replicated to every node. tests/integration/test_distribution.py reads the
catalog after all migrations and holds every table the migrations create to these rules, and
docs/scaling.md gives the calls `citus_statements` prints.
"""

from __future__ import annotations

from dataclasses import dataclass

DISTRIBUTION_COLUMN = "tenant_id"
# The tenants table is distributed by its own id; every other tenant table references it.
OWN_COLUMN = {"tenants": "id"}

# Table -> why it is not distributed by tenant (it is a Citus reference table instead).
REFERENCE_TABLES: dict[str, str] = {
    "schema_migrations": "the schema's version, one row per migration",
    "api_keys": "the credential directory: a bearer token is looked up by its hash before the"
    " tenant is known (and operator keys have none); small, written on key changes and at most"
    " once a minute per key and process (last use)",
    "console_sessions": "console sign-ins, looked up by the cookie's hash before the tenant is"
    " known; a wallet's session picks its tenant after sign-in",
    "console_nonces": "Sign-In with Ethereum nonces, per address, before any tenant",
    "signing_keys": "the deployment's signing keys, the same for every tenant",
    "key_set": "one row: the version of the deployment's key set",
    "secret_keys": "the deployment's sealed secrets keys, one per feature",
    "storage_probes": "one row per gateway host, written while a database failure is known",
    "address_windows": "requests per client address of the public routes, before any tenant",
}


def distribution_column(table: str) -> str:
    return OWN_COLUMN.get(table, DISTRIBUTION_COLUMN)


def citus_statements(tables: list[str]) -> list[str]:
    """The calls that distribute `tables` (every table of the schema) on Citus: reference tables
    first, then `tenants`, then every tenant table colocated with it."""
    reference = [t for t in sorted(tables) if t in REFERENCE_TABLES]
    distributed = sorted((t for t in tables if t not in REFERENCE_TABLES), key=lambda t: (t != "tenants", t))
    out = [f"SELECT create_reference_table('{t}');" for t in reference]
    for table in distributed:
        colocate = "" if table == "tenants" else ", colocate_with => 'tenants'"
        out.append(f"SELECT create_distributed_table('{table}', '{distribution_column(table)}'{colocate});")
    return out


@dataclass(frozen=True, slots=True)
class PerDialect:
    """A migration written differently for each backend (SQLite cannot alter a primary key)."""

    sqlite: list[str]
    postgresql: list[str]


def _rebuild(table: str, create: str, indexes: list[str]) -> list[str]:
    """SQLite's way to change a table's keys (https://sqlite.org/lang_altertable.html#otheralter):
    create the new table, copy every row, drop the old one, rename, create its indexes again.
    `create` lists the columns in the order the old table has them, so `SELECT *` copies them."""
    return [
        create.format(name=f"{table}_new"),
        f"INSERT INTO {table}_new SELECT * FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_new RENAME TO {table}",
        *indexes,
    ]


_ACTIONS = """CREATE TABLE {name} (
    id TEXT NOT NULL,
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
    created_at TEXT NOT NULL,
    summary TEXT, required_roles TEXT, decided_at TEXT, risk TEXT, classification TEXT, limits TEXT,
    context TEXT, checks TEXT, proposed_reason TEXT, vendor TEXT, amount TEXT, require_approval INTEGER,
    PRIMARY KEY (tenant_id, id)
)"""

_APPROVALS = """CREATE TABLE {name} (
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
    PRIMARY KEY (tenant_id, action_id, signer)
)"""

_API_KEYS = """CREATE TABLE {name} (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    role TEXT NOT NULL,
    agent_id TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    expires_at TEXT,
    last_used_at TEXT
)"""

_WEBHOOKS = """CREATE TABLE {name} (
    id TEXT NOT NULL,
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
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
)"""

_WEBHOOK_DELIVERIES = """CREATE TABLE {name} (
    id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT,
    attempted_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
)"""

_CONSOLE_SESSIONS = """CREATE TABLE {name} (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    csrf_token TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT,
    key_id TEXT,
    role TEXT,
    tenant_id TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
)"""

# A limit counts each action once (a policy's limit ids are unique), so this is the claim's key.
_LIMIT_CLAIMS = """CREATE TABLE {name} (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    limit_id TEXT NOT NULL,
    bucket TEXT NOT NULL,
    amount TEXT NOT NULL,
    action_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    released_at TEXT,
    PRIMARY KEY (tenant_id, action_id, limit_id)
)"""

# Lookups that cannot know the tenant (a wallet's approval names only the action) find an
# action by its id alone; single-database deployments keep that an index lookup.
_ACTIONS_BY_ID = "CREATE INDEX actions_id ON actions (id)"
_DELIVERIES_BY_WEBHOOK = (
    "CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (tenant_id, webhook_id, id)"
)

# Migration 23: tenant_id into every key of the tenant tables; no foreign key from a reference
# table to a distributed one (Citus refuses it). Existing rows are kept.
TENANT_KEYS = PerDialect(
    sqlite=[
        *_rebuild("actions", _ACTIONS, [
            "CREATE INDEX actions_tenant_agent_id ON actions (tenant_id, agent_id, id)",
            "CREATE INDEX actions_pending ON actions (status, approval_expires_at)",
            "CREATE INDEX actions_vendor ON actions (tenant_id, vendor, status)",
            "CREATE INDEX actions_agent_created ON actions (tenant_id, agent_id, created_at)",
            _ACTIONS_BY_ID,
        ]),
        *_rebuild("approvals", _APPROVALS, []),
        *_rebuild("api_keys", _API_KEYS, ["CREATE INDEX api_keys_tenant_agent ON api_keys (tenant_id, agent_id)"]),
        *_rebuild("webhooks", _WEBHOOKS, [
            "CREATE INDEX webhooks_tenant ON webhooks (tenant_id, kind, id)",
            "CREATE INDEX webhooks_due ON webhooks (enabled, due_ms)",
        ]),
        *_rebuild("webhook_deliveries", _WEBHOOK_DELIVERIES, [
            _DELIVERIES_BY_WEBHOOK,
            "CREATE INDEX webhook_deliveries_attempted ON webhook_deliveries (attempted_at)",
        ]),
        *_rebuild("console_sessions", _CONSOLE_SESSIONS, []),
        *_rebuild("limit_claims", _LIMIT_CLAIMS, [
            "CREATE INDEX limit_claims_bucket ON limit_claims (tenant_id, limit_id, bucket, created_at)",
        ]),
    ],
    postgresql=[
        "ALTER TABLE actions DROP CONSTRAINT actions_pkey, ADD PRIMARY KEY (tenant_id, id)",
        "DROP INDEX actions_tenant_id",  # the primary key's index now
        _ACTIONS_BY_ID,
        "ALTER TABLE approvals DROP CONSTRAINT approvals_pkey, ADD PRIMARY KEY (tenant_id, action_id, signer)",
        "ALTER TABLE api_keys DROP CONSTRAINT api_keys_tenant_id_fkey",
        "ALTER TABLE webhooks DROP CONSTRAINT webhooks_pkey, ADD PRIMARY KEY (tenant_id, id)",
        "ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_pkey, ADD PRIMARY KEY (tenant_id, id)",
        "DROP INDEX webhook_deliveries_webhook",
        _DELIVERIES_BY_WEBHOOK,
        "ALTER TABLE console_sessions DROP CONSTRAINT console_sessions_tenant_id_fkey",
        "ALTER TABLE limit_claims ADD PRIMARY KEY (tenant_id, action_id, limit_id)",
        "DROP INDEX limit_claims_action",  # the primary key's index now
    ],
)  # fmt: skip
