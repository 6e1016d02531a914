"""Policy versions: publish (immutable, numbered 1, 2, …), read, activate; a cache of compiled versions."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

from gateway import schemas
from gateway.auth import Principal
from gateway.clock import rfc3339, utc_now
from gateway.errors import NotFound, Unprocessable, UnsupportedMediaType
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.storage import Conn, Database
from policy import CompiledPolicy, LoadedPolicy, PolicyInvalid, compile_document, load_policy

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def load_draft(body: bytes, content_type: str) -> LoadedPolicy:
    """Validate a policy document sent as JSON or YAML. Raises UnsupportedMediaType,
    Unprocessable (`policy_invalid`, with every problem)."""
    media_type = content_type.split(";", 1)[0].strip().lower() or "application/json"
    if media_type not in ("application/json", *YAML_TYPES):
        raise UnsupportedMediaType(
            f"send the policy as application/json or application/yaml, not {media_type}"
        )
    try:
        return load_policy(body, "application/yaml" if media_type in YAML_TYPES else "application/json")
    except PolicyInvalid as exc:
        raise Unprocessable(
            f"the policy has {len(exc.problems)} problem(s)",
            code="policy_invalid",
            problems=[problem.as_dict() for problem in exc.problems],
        ) from exc


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    version: int
    hash: str
    compiled: CompiledPolicy


class PolicyService:
    def __init__(self, db: Database, ledger: Ledger, *, cache_size: int = 1024) -> None:
        self.db = db
        self.ledger = ledger
        self._cache: OrderedDict[tuple[str, int], ActivePolicy] = OrderedDict()
        self._cache_size = cache_size

    async def publish(
        self, principal: Principal, tenant_id: str, body: bytes, content_type: str, *, activate: bool
    ) -> schemas.PolicyVersion:
        """Validate and store a new version. Raises Unprocessable (`policy_invalid`, with every problem)."""
        loaded = load_draft(body, content_type)
        now = rfc3339(utc_now())
        draft = EntryDraft("policy.published", principal.actor, {"hash": loaded.hash, "activated": activate})
        state: dict[str, int] = {}

        async def next_version(conn: Conn) -> None:
            row = await conn.fetchrow("SELECT MAX(version) AS v FROM policies WHERE tenant_id = ?", tenant_id)
            state["version"] = int(row["v"] or 0) + 1 if row else 1
            draft.data["version"] = state["version"]
            if activate:
                unit.activates_policy = state["version"]

        def statements(seqs: list[int]) -> list[tuple[str, tuple]]:
            writes: list[tuple[str, tuple]] = [
                (
                    "INSERT INTO policies (tenant_id, version, document, hash, created_at, created_by)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        tenant_id,
                        state["version"],
                        loaded.canonical.decode(),
                        loaded.hash,
                        now,
                        principal.actor,
                    ),
                )
            ]
            if activate:
                writes.append(
                    (
                        "UPDATE tenants SET active_policy_version = ? WHERE id = ?",
                        (state["version"], tenant_id),
                    )
                )
            return writes

        unit = Unit([draft], statements, prepare=next_version, credential=principal.credential)
        await self.ledger.append(tenant_id, unit)
        self._remember(tenant_id, ActivePolicy(state["version"], loaded.hash, loaded.compiled))
        return schemas.PolicyVersion(state["version"], loaded.hash, activate, now, principal.actor)

    async def activate(self, principal: Principal, tenant_id: str, version: int) -> schemas.PolicyVersion:
        """Make `version` the active one. Raises NotFound (`policy_not_found`)."""
        found: dict[str, dict] = {}

        async def load_version(conn: Conn) -> None:
            row = await conn.fetchrow(
                "SELECT version, hash, created_at, created_by FROM policies WHERE tenant_id = ? AND version = ?",
                tenant_id,
                version,
            )
            if row is None:
                raise NotFound(f"policy version {version} not found", code="policy_not_found")
            found["row"] = row

        unit = Unit(
            [EntryDraft("policy.activated", principal.actor, {"version": version})],
            lambda seqs: [
                ("UPDATE tenants SET active_policy_version = ? WHERE id = ?", (version, tenant_id))
            ],
            prepare=load_version,
            activates_policy=version,
            credential=principal.credential,
        )
        await self.ledger.append(tenant_id, unit)
        row = found["row"]
        return schemas.PolicyVersion(
            int(row["version"]), row["hash"], True, row["created_at"], row["created_by"]
        )

    async def list_versions(self, tenant_id: str) -> list[schemas.PolicyVersion]:
        async with self.db.read() as conn:
            tenant = await conn.fetchrow("SELECT active_policy_version FROM tenants WHERE id = ?", tenant_id)
            rows = await conn.fetch(
                "SELECT version, hash, created_at, created_by FROM policies WHERE tenant_id = ? ORDER BY version",
                tenant_id,
            )
        active = tenant["active_policy_version"] if tenant else None
        return [
            schemas.PolicyVersion(
                int(r["version"]), r["hash"], r["version"] == active, r["created_at"], r["created_by"]
            )
            for r in rows
        ]

    async def get_version(self, tenant_id: str, version: int) -> schemas.PolicyDetail:
        """Raises NotFound (`policy_not_found`)."""
        async with self.db.read() as conn:
            tenant = await conn.fetchrow("SELECT active_policy_version FROM tenants WHERE id = ?", tenant_id)
            row = await conn.fetchrow(
                "SELECT version, hash, created_at, created_by, document FROM policies"
                " WHERE tenant_id = ? AND version = ?",
                tenant_id,
                version,
            )
        if row is None or tenant is None:
            raise NotFound(f"policy version {version} not found", code="policy_not_found")
        return schemas.PolicyDetail(
            int(row["version"]),
            row["hash"],
            tenant["active_policy_version"] == row["version"],
            row["created_at"],
            row["created_by"],
            json.loads(row["document"]),
        )

    async def compiled(self, tenant_id: str, version: int) -> ActivePolicy:
        """The compiled form of a stored version (versions are immutable, so it is cached).

        Raises NotFound if the version does not exist.
        """
        key = (tenant_id, version)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT document, hash FROM policies WHERE tenant_id = ? AND version = ?", tenant_id, version
            )
        if row is None:
            raise NotFound(f"policy version {version} not found", code="policy_not_found")
        active = ActivePolicy(version, row["hash"], compile_document(json.loads(row["document"])))
        self._remember(tenant_id, active)
        return active

    def _remember(self, tenant_id: str, active: ActivePolicy) -> None:
        self._cache[(tenant_id, active.version)] = active
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
