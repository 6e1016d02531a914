"""Tenants' rail configurations: write-only secrets, encrypted at rest, audited by hash.

`PUT /v1/tenants/{t}/rails/{name}` checks a configuration with its kind's `check` (URL rules,
field paths, defaults), splits out the secret members (an API key), seals them
(`gateway.rails.secrets`) and commits the row with a `rail.configured` entry that records the
public part and only the SHA-256 of each secret. Nothing ever returns a secret: the API shows
the same hashes, so an admin can tell which key is configured without seeing it.

`adapter(tenant, name)` builds the rail's adapter for the executor, rebuilt when the
configuration changes (by `updated_at`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from gateway import execution_schemas as wire
from gateway.auth import Principal
from gateway.clock import rfc3339, utc_now
from gateway.errors import Conflict, NotFound, Unavailable, Unprocessable
from gateway.ledger import EntryDraft, Ledger, Statement, Unit
from gateway.rails import KINDS
from gateway.rails.base import RailAdapter, RailConfigError
from gateway.rails.secrets import SecretsUnreadable, seal, unseal
from gateway.storage import Conn, Database

RAIL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_COLUMNS = "tenant_id, name, kind, config, secrets, secret_hashes, created_at, updated_at"
IN_FLIGHT = ("pending", "submitted")


class RailNotFound(NotFound):
    code = "rail_not_found"


def secret_hash(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def view(row: dict[str, Any]) -> wire.RailView:
    return wire.RailView(
        row["name"], row["kind"], json.loads(row["config"]), json.loads(row["secret_hashes"]),
        row["created_at"], row["updated_at"],
    )  # fmt: skip


def check_name(name: str) -> str:
    if not RAIL_NAME.fullmatch(name):
        raise Unprocessable(f"rail names match {RAIL_NAME.pattern}", code="invalid_rail_name", field="name")
    return name


async def fetch_rails(conn: Conn, tenant_id: str) -> dict[str, dict[str, Any]]:
    """The tenant's rails by name (rows as stored)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM rails WHERE tenant_id = ? ORDER BY name", tenant_id)
    return {row["name"]: row for row in rows}


class RailService:
    def __init__(self, db: Database, ledger: Ledger, secret_key: bytes) -> None:
        self.db = db
        self.ledger = ledger
        self._key = secret_key
        self._adapters: dict[tuple[str, str], tuple[str, RailAdapter]] = {}
        self._retired: list[RailAdapter] = []  # replaced adapters (requests may still use them)

    async def configure(
        self, principal: Principal, tenant_id: str, name: str, body: wire.ConfigureRail
    ) -> wire.RailView:
        """Create or replace a rail. Raises Unprocessable (`invalid_rail_name`, `unknown_rail_kind`,
        `invalid_rail_config` with the member's `field`), NotFound for an unknown tenant."""
        check_name(name)
        kind = KINDS.get(body.kind)
        if kind is None:
            raise Unprocessable(
                f"rail kind {body.kind!r} is not one of {', '.join(sorted(KINDS))}", code="unknown_rail_kind",
                field="kind",
            )  # fmt: skip
        try:
            config = kind.check(body.config)
        except RailConfigError as exc:
            raise Unprocessable(f"{exc.field}: {exc}", code="invalid_rail_config", field=exc.field) from None
        secrets = {field: config.pop(field) for field in kind.secret_fields}
        hashes = {field: secret_hash(value) for field, value in secrets.items()}
        sealed = seal(self._key, tenant_id, name, secrets)
        now = rfc3339(utc_now())
        public = json.dumps(config, sort_keys=True)
        entry = EntryDraft(
            "rail.configured",
            principal.actor,
            {"name": name, "kind": kind.name, "config": config, "secrets": hashes},
        )
        created: dict[str, str] = {}

        async def prepare(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT created_at FROM rails WHERE tenant_id = ? AND name = ?", tenant_id, name
            )
            created["at"] = row["created_at"] if row else now

        def statements(seqs: list[int]) -> list[Statement]:
            return [
                (
                    f"INSERT INTO rails ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name)"
                    " DO UPDATE SET kind = excluded.kind, config = excluded.config, secrets = excluded.secrets,"
                    " secret_hashes = excluded.secret_hashes, updated_at = excluded.updated_at",
                    (tenant_id, name, kind.name, public, sealed, json.dumps(hashes), created["at"], now),
                )
            ]

        await self.ledger.append(
            tenant_id, Unit([entry], statements=statements, prepare=prepare, credential=principal.credential)
        )
        return wire.RailView(name, kind.name, config, hashes, created["at"], now)

    async def list(self, tenant_id: str) -> wire.RailList:
        async with self.db.read() as conn:
            rows = await fetch_rails(conn, tenant_id)
        return wire.RailList([view(row) for row in rows.values()])

    async def get(self, tenant_id: str, name: str) -> wire.RailView:
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM rails WHERE tenant_id = ? AND name = ?", tenant_id, name
            )
        if row is None:
            raise RailNotFound(f"rail {name!r} not found")
        return view(row)

    async def remove(self, principal: Principal, tenant_id: str, name: str) -> None:
        """Raises RailNotFound, Conflict (`rail_in_use`) while an execution on it is in flight."""

        async def prepare(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT name FROM rails WHERE tenant_id = ? AND name = ?", tenant_id, name
            )
            if row is None:
                raise RailNotFound(f"rail {name!r} not found")
            busy = await conn.fetchrow(
                "SELECT id FROM executions WHERE tenant_id = ? AND rail = ? AND (status IN (?, ?)"
                " OR rollback_status = 'requested') LIMIT 1",
                tenant_id, name, *IN_FLIGHT,
            )  # fmt: skip
            if busy is not None:
                raise Conflict(f"execution {busy['id']} on rail {name!r} is in flight", code="rail_in_use",
                               execution_id=busy["id"])  # fmt: skip

        def statements(seqs: list[int]) -> list[Statement]:
            return [("DELETE FROM rails WHERE tenant_id = ? AND name = ?", (tenant_id, name))]

        entry = EntryDraft("rail.removed", principal.actor, {"name": name})
        await self.ledger.append(
            tenant_id, Unit([entry], statements=statements, prepare=prepare, credential=principal.credential)
        )
        cached = self._adapters.pop((tenant_id, name), None)
        if cached is not None:
            self._retired.append(cached[1])

    def adapter_of(self, row: dict[str, Any]) -> RailAdapter:
        """The adapter of a stored rail row (cached until its `updated_at` changes). Raises
        Unavailable (`rail_secrets_unreadable`) when its secrets do not decrypt here."""
        key = (row["tenant_id"], row["name"])
        cached = self._adapters.get(key)
        if cached is not None and cached[0] == row["updated_at"]:
            return cached[1]
        if cached is not None:
            self._retired.append(cached[1])
        kind = KINDS[row["kind"]]
        try:
            secrets = unseal(self._key, row["tenant_id"], row["name"], row["secrets"])
        except SecretsUnreadable as exc:
            raise Unavailable(str(exc), code="rail_secrets_unreadable") from None
        adapter = kind.build({**json.loads(row["config"])}, secrets)
        self._adapters[key] = (row["updated_at"], adapter)
        return adapter

    async def adapter(self, tenant_id: str, name: str) -> RailAdapter:
        """Raises RailNotFound, Unavailable."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM rails WHERE tenant_id = ? AND name = ?", tenant_id, name
            )
        if row is None:
            raise RailNotFound(f"rail {name!r} not found")
        return self.adapter_of(row)

    async def close(self) -> None:
        for adapter in [adapter for _, adapter in self._adapters.values()] + self._retired:
            await adapter.close()
        self._adapters.clear()
        self._retired.clear()
