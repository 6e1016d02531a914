"""Rotating the deployment's signing keys (`verdict keys rotate --verdict | --log`), on any host.

A rotation, in this order, so that nothing is ever signed by a key the log does not announce, and
no host signs with the retired key after its `not_after`:

1. create the new key: sealed into the database with the key-encryption key when the deployment
   has one (every host can then open it), else a new 0600 file in this data dir; publish it in
   `signing_keys`, not scheduled yet;
2. append a `key.rotated` entry to every tenant's log, naming the retired and the new key
   (for the log key: both vkeys of that tenant's log);
3. for the log key: checkpoint every tenant's log with the *old* key, so the key an auditor
   already trusts signs the entry that introduces its successor;
4. schedule the switch `SWITCH_SECONDS` ahead: the old key's `not_after` and the new key's
   `not_before` are that instant. Every running gateway reads the schedule within a second
   (`gateway.app.watch_keys`) and switches at that instant; one that could not read it stops
   signing before then (its lease runs out), so none signs with the retired key after it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import Conflict
from gateway.keyring import LOG, VERDICT, KeyRecord, activate, generate_key, new_key, parse_time
from gateway.ledger import EntryDraft, Ledger, Unit
from gateway.sealing import kek_from_env, seal
from gateway.services.audit import AuditService
from gateway.services.published_keys import establish_keys, publish_pending, schedule_switch
from gateway.storage import Database


@dataclass(frozen=True, slots=True)
class Rotation:
    kind: str
    retired: KeyRecord
    active: KeyRecord
    tenants: list[str]


async def rotate_key(
    db: Database, data_dir: Path, kind: str, log_origin: str, environ: Any = None
) -> Rotation:
    """Rotate the verdict signer (`kind` = "verdict") or the log key ("log"). See the module doc.

    Raises `ValueError` for another kind, `Conflict` when a rotation of that kind is already
    scheduled, and what `establish_keys` raises when this host may not sign."""
    if kind not in (VERDICT, LOG):
        raise ValueError(f"unknown key kind {kind!r}")
    env = os.environ if environ is None else environ
    keyring = await establish_keys(db, data_dir, env, lease=None)
    retired = keyring.active(kind)
    if any(r.status == "next" for r in keyring.of_kind(kind)):
        raise Conflict(f"a rotation of the {kind} key is already scheduled; run this again after it")
    kek = kek_from_env(env)
    if kek is not None:  # (1)
        record, private = generate_key(kind)
        await publish_pending(db, record, seal(kek, kind, record.public, private))
    else:
        record, private = new_key(data_dir, kind)
        await publish_pending(db, record, None)
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
                new_public = Ed25519PrivateKey.from_private_bytes(private).public_key()
                data = {
                    "kind": kind,
                    "retired_vkey": old_audit.vkey(tenant),
                    "active_vkey": old_audit.vkey(tenant, new_public),
                }
            await ledger.append(tenant, Unit([EntryDraft("key.rotated", "operator", data)]))
    finally:
        await ledger.close()
    if kind == LOG:
        for tenant in tenants:  # (3)
            await old_audit.checkpoint(tenant)
    at = await schedule_switch(db, retired, record)  # (4)
    if kek is None:
        from datetime import UTC, datetime

        activate(data_dir, record, datetime.fromtimestamp(parse_time(at), UTC))
    return Rotation(kind, replace(retired, not_after=at), replace(record, not_before=at), tenants)
