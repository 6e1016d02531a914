"""Rotating the gateway's signing keys (`verdict keys rotate --verdict | --log`).

A rotation, in this order, so that nothing is ever signed by a key the log does not announce:

1. create the new key (a new 0600 file), not active yet;
2. append a `key.rotated` entry to every tenant's log, naming the retired and the new key
   (for the log key: both vkeys of that tenant's log);
3. for the log key: checkpoint every tenant's log with the *old* key, so the key an auditor
   already trusts signs the entry that introduces its successor;
4. activate the new key in the manifest; the old one is retired (`not_after` = now) and stays
   published. Running gateways reload the manifest within a second (gateway.app.watch_keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.keyring import LOG, VERDICT, KeyRecord, activate, load_keyring, new_key
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.services.audit import AuditService
from gateway.storage import Database


@dataclass(frozen=True, slots=True)
class Rotation:
    kind: str
    retired: KeyRecord
    active: KeyRecord
    tenants: list[str]


async def rotate_key(db: Database, data_dir: Path, kind: str, log_origin: str) -> Rotation:
    """Rotate the verdict signer (`kind` = "verdict") or the log key ("log"). See the module doc."""
    if kind not in (VERDICT, LOG):
        raise ValueError(f"unknown key kind {kind!r}")
    keyring = load_keyring(data_dir)
    retired = keyring.active(kind)
    record, key = new_key(data_dir, kind)  # (1)
    old_audit = AuditService(db, keyring.log_key, log_origin)
    async with db.read() as conn:
        tenants = [
            r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM audit_heads ORDER BY tenant_id")
        ]
    ledger = Ledger(db)
    try:
        for tenant in tenants:  # (2)
            if kind == VERDICT:
                data = {"kind": kind, "retired": retired.public, "active": record.public}
            else:
                data = {
                    "kind": kind,
                    "retired_vkey": old_audit.vkey(tenant),
                    "active_vkey": old_audit.vkey(tenant, key.public_key()),
                }
            await ledger.append(tenant, Unit([EntryDraft("key.rotated", "operator", data)]))
    finally:
        await ledger.close()
    if kind == LOG:
        for tenant in tenants:  # (3)
            await old_audit.checkpoint(tenant)
    active = activate(data_dir, record)  # (4)
    return Rotation(kind, retired, active, tenants)
