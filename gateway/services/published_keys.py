"""The deployment's published signing keys: the only keys any host may sign with (DESIGN inv. 12).

The table `signing_keys` lists every verdict signer and log key the deployment ever used, with the
window each is in force for (`not_before`, `not_after`), and, when the deployment shares its keys
through a key-encryption key (`gateway.sealing`), the private key sealed under it. The one row of
`key_set` is the lock every start and rotation takes, and its `version` changes with every write,
which is what running gateways poll (once a second) to follow a rotation made on another host.

At start (`establish_keys`), under that lock:

1. nothing published yet (a new database): this host's keys are published: its data dir's, or,
   with a KEK and an empty data dir, new ones kept only sealed in the database;
2. else every key this host holds must be published (a *foreign* key refuses the start), and
   this host must be able to load each published key in force or scheduled: from its data dir,
   or by opening the sealed copy with the KEK (a host *without* them refuses the start);
3. with a KEK, published keys this host holds in files but the database lacks sealed are sealed
   into it (how a single host moves to a shared deployment).

The bootstrap admin token is installed in the same transaction (`gateway.services.admin_token`),
and the deployment's secrets key established (`gateway.services.secrets_key`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.errors import KeyFileError
from gateway.clock import rfc3339, utc_now
from gateway.keyring import (
    ADMIN_TOKEN_FILE,
    LOG,
    MANIFEST_FILE,
    VERDICT,
    KeyRecord,
    Keyring,
    Lease,
    PublishedLogKey,
    PublishedSigner,
    ensure_local_keys,
    format_time,
    generate_key,
    load_private,
    local_records,
    parse_time,
    read_admin_token,
)
from gateway.sealing import KEK_ENV, SealError, kek_from_env, seal, unseal
from gateway.services.admin_token import install_admin_token
from gateway.services.secrets_key import file_keys, sealed_keys
from gateway.storage import Database
from gateway.storage.base import Conn

SWITCH_SECONDS = 10  # a rotation takes effect on every host this long after it commits
LEASE_SECONDS = 8.0  # a gateway signs only this long after it last read the published keys
POLL_SECONDS = 1.0
HOW_TO_SHARE = (
    f"Every host of a deployment must sign with the same keys. To share them, give every host the same"
    f" {KEK_ENV} (make one with `verdict keys new-kek`), start the host that holds the published keys"
    " with it once so that it seals them into the database, and start the other hosts with it and an"
    ' empty data dir (docs/deployment.md, "Keys across hosts").'
)


class KeysRefused(KeyFileError):
    """This host may not start: its keys are not the published ones, or it cannot load them."""


async def establish_keys(
    db: Database,
    data_dir: Path,
    environ: Any = None,
    *,
    publish: bool = True,
    lease: float | None = LEASE_SECONDS,
) -> Keyring:
    """Check this host's keys against the published ones (publishing them on a new database) and
    install the bootstrap admin token once; see the module doc. `publish` False (the audit
    commands) writes nothing. Raises `KeysRefused` with the paragraph to show, `KeyFileError` for
    a bad key file or KEK."""
    env = os.environ if environ is None else environ
    kek = kek_from_env(env)
    created: list[str] = []
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    async with db.transaction() as conn:
        await _lock(conn)
        rows = await _read(conn)
        if not rows and publish:
            created, rows = await _publish_first(conn, data_dir, env, kek)
        elif not rows:
            rows = [(r, None) for r in local_records(data_dir, env)]
            if not rows:
                raise KeysRefused(
                    f"no signing keys are published in this database and none are in {data_dir}"
                )
        else:
            _refuse_foreign(rows, local_records(data_dir, env), data_dir)
        privates = _privates(rows, data_dir, env, kek)
        if kek is not None and publish:
            await _seal_missing(conn, rows, privates, kek)
        secrets = None
        if publish:  # the key that seals rail and webhook secrets, established with the signing keys
            secrets = await sealed_keys(conn, data_dir, kek) if kek is not None else file_keys(data_dir)
        admin = await install_admin_token(conn, data_dir, created) if publish else read_admin_token(data_dir)
        version = (await conn.fetchrow("SELECT version FROM key_set WHERE id = 1"))["version"]
    keyring = build_keyring(rows, privates, Lease(lease), version, strict=True)
    local = {(r.kind, r.public): r for r in local_records(data_dir, env)}
    paths = {}
    for kind in (VERDICT, LOG):  # the files the keys in force were loaded from, if any
        record = local.get((kind, keyring.active(kind).public))
        sealed = next(s for r, s in rows if (r.kind, r.public) == (kind, keyring.active(kind).public))
        if record is not None and (kek is None or sealed is None):
            paths[f"{kind}_key"] = data_dir / record.file
    if admin is not None:
        paths["admin_token"] = data_dir / ADMIN_TOKEN_FILE
    return replace(keyring, admin_token=admin, created=tuple(created), paths=paths, secrets=secrets)


async def refresh_keys(db: Database, keyring: Keyring, data_dir: Path, environ: Any = None) -> Keyring:
    """Re-read the published keys when they changed or a scheduled switch is due, and confirm the
    lease. Returns `keyring` itself when nothing changed. Raises what the database raises."""
    async with db.read() as conn:
        version = (await conn.fetchrow("SELECT version FROM key_set WHERE id = 1"))["version"]
        due = keyring.next_switch is not None and time.time() >= keyring.next_switch
        if version == keyring.version and not due:
            keyring.lease.confirm()
            return keyring
        rows = await _read(conn)
    env = os.environ if environ is None else environ
    kek = kek_from_env(env)
    privates = _privates(rows, data_dir, env, kek, strict=False)
    fresh = build_keyring(rows, privates, keyring.lease, version, strict=False, previous=keyring)
    keyring.lease.confirm()
    return replace(
        fresh,
        admin_token=keyring.admin_token,
        paths=keyring.paths,
        created=keyring.created,
        secrets=keyring.secrets,
    )


def build_keyring(
    rows: list[tuple[KeyRecord, bytes | None]],
    privates: dict[tuple[str, str], bytes | None],
    lease: Lease,
    version: int,
    *,
    strict: bool,
    previous: Keyring | None = None,
) -> Keyring:
    """The signers of the keys in force now. `strict`: raise `KeysRefused` when one is missing;
    else put in its place `previous`'s signer of that kind, made to refuse every signature."""
    now = time.time()
    chosen: dict[str, tuple[KeyRecord, bytes] | None] = {}
    missing = []
    for kind in (VERDICT, LOG):
        record = in_force([r for r, _ in rows], kind, now)
        private = privates.get((kind, record.public)) if record else None
        chosen[kind] = (record, private) if record and private else None
        scheduled = [r for r, _ in rows if r.kind == kind and r.not_before and parse_time(r.not_before) > now]
        missing += [
            r for r in ([record] if record else []) + scheduled if privates.get((r.kind, r.public)) is None
        ]
    if (missing and strict) or ((not chosen[VERDICT] or not chosen[LOG]) and previous is None):
        sealed = {(r.kind, r.public) for r, blob in rows if blob is not None}
        raise KeysRefused(_missing_message(missing, all((r.kind, r.public) in sealed for r in missing)))
    verdict = PublishedSigner(chosen[VERDICT][1], chosen[VERDICT][0], lease) if chosen[VERDICT] else None
    log = (
        PublishedLogKey(Ed25519PrivateKey.from_private_bytes(chosen[LOG][1]), chosen[LOG][0], lease)
        if chosen[LOG]
        else None
    )
    if previous is not None:  # the key in force is one this host cannot load: sign nothing
        verdict = verdict or previous.verdict_signer.retired()
        log = log or previous.log_key.retired()
    history = tuple(r for r, _ in rows)
    return Keyring(verdict, log, None, {}, (), history, lease, _next_switch(history, now), version)


def in_force(records: list[KeyRecord], kind: str, now: float) -> KeyRecord | None:
    """The key of `kind` whose window holds `now`; before the first key's `not_before` (a host
    whose clock is a little behind the one that published it), the first key."""
    scheduled = [r for r in records if r.kind == kind and r.not_before]
    for r in scheduled:
        if parse_time(r.not_before) <= now and (r.not_after is None or now < parse_time(r.not_after)):
            return r
    first = min(scheduled, key=lambda r: parse_time(r.not_before), default=None)
    return first if first is not None and now < parse_time(first.not_before) else None


async def publish_pending(db: Database, record: KeyRecord, sealed: bytes | None) -> None:
    """Publish a new key, not scheduled yet (step 1 of a rotation)."""
    async with db.transaction() as conn:
        await _lock(conn)
        await _insert(conn, record, sealed)
        await _bump(conn)


async def schedule_switch(db: Database, retired: KeyRecord, active: KeyRecord) -> str:
    """Retire `retired` and put `active` in force at the same instant, SWITCH_SECONDS from now (so
    that every running gateway reads the schedule before it applies). Returns that instant."""
    at = format_time_unix(math.ceil(time.time()) + SWITCH_SECONDS)
    async with db.transaction() as conn:
        await _lock(conn)
        await conn.execute(
            "UPDATE signing_keys SET not_after = ? WHERE kind = ? AND public = ?",
            at,
            retired.kind,
            retired.public,
        )
        await conn.execute(
            "UPDATE signing_keys SET not_before = ? WHERE kind = ? AND public = ?",
            at,
            active.kind,
            active.public,
        )
        await _bump(conn)
    return at


def format_time_unix(seconds: float) -> str:
    from datetime import UTC, datetime

    return format_time(datetime.fromtimestamp(seconds, UTC))


# ---- steps


async def _read(conn: Conn) -> list[tuple[KeyRecord, bytes | None]]:
    rows = await conn.fetch(
        "SELECT kind, public, not_before, not_after, sealed FROM signing_keys"
        " ORDER BY (not_before IS NULL), not_before, published_at, public"
    )
    return [
        (KeyRecord(r["kind"], "", r["public"], r["not_before"] or "", r["not_after"]), r["sealed"])
        for r in rows
    ]


async def _publish_first(
    conn: Conn, data_dir: Path, env: Any, kek: bytes | None
) -> tuple[list[str], list[tuple[KeyRecord, bytes | None]]]:
    """(1) of the module doc. Returns what was created and the published rows."""
    has_local = (data_dir / MANIFEST_FILE).exists() or bool(env.get("VERDICT_SIGNER_KEYSTORE"))
    created: list[str] = []
    if kek is None or has_local:
        created = ensure_local_keys(data_dir)
        records = local_records(data_dir, env)
        pairs = [(r, load_private(data_dir, r, env)) for r in records]
    else:
        now = format_time_unix(time.time())
        pairs = []
        for kind in (VERDICT, LOG):
            record, private = generate_key(kind)
            pairs.append((replace(record, not_before=now), private))
            created.append(f"{kind}_key (sealed in the database)")
    rows = []
    for record, private in pairs:
        sealed = seal(kek, record.kind, record.public, private) if kek is not None else None
        await _insert(conn, record, sealed)
        rows.append((replace(record, file=""), sealed))
    await _bump(conn)
    return created, rows


def _refuse_foreign(
    rows: list[tuple[KeyRecord, bytes | None]], local: list[KeyRecord], data_dir: Path
) -> None:
    """(2) of the module doc: every key this host holds must be published."""
    published = {(r.kind, r.public) for r, _ in rows}
    foreign = [r for r in local if (r.kind, r.public) not in published]
    if not foreign:
        return
    now = time.time()
    theirs = [r for kind in (VERDICT, LOG) if (r := in_force([r for r, _ in rows], kind, now))]
    raise KeysRefused(
        f"This host holds signing keys that this deployment's database does not publish"
        f" ({_names(foreign)}, in {data_dir}); the database publishes {_names(theirs)}. It refuses to start"
        f" rather than sign with keys nobody can verify. {HOW_TO_SHARE} If this data dir belongs to"
        " another deployment, point it at that deployment's database instead."
    )


def _privates(
    rows: list[tuple[KeyRecord, bytes | None]],
    data_dir: Path,
    env: Any,
    kek: bytes | None,
    *,
    strict: bool = True,
) -> dict[tuple[str, str], bytes | None]:
    """The private key of each published key this host can load (None where it cannot)."""
    local = {(r.kind, r.public): r for r in local_records(data_dir, env)}
    out: dict[tuple[str, str], bytes | None] = {}
    for record, sealed in rows:
        key = (record.kind, record.public)
        if kek is not None and sealed is not None:
            try:
                out[key] = unseal(kek, record.kind, record.public, sealed)
            except SealError as error:
                if not strict:
                    out[key] = None
                    continue
                raise KeysRefused(
                    f"The signing keys sealed in this deployment's database do not open with this host's"
                    f" {KEK_ENV} ({error}), so it refuses to start. Every host of a deployment must use the"
                    " same key-encryption key: copy it from a host that starts, or from where you keep it."
                ) from None
        elif key in local:
            out[key] = load_private(data_dir, local[key], env)
        else:
            out[key] = None
    return out


async def _seal_missing(
    conn: Conn,
    rows: list[tuple[KeyRecord, bytes | None]],
    privates: dict[tuple[str, str], bytes | None],
    kek: bytes,
) -> None:
    """(3) of the module doc."""
    sealed_any = False
    for record, sealed in rows:
        private = privates.get((record.kind, record.public))
        if sealed is None and private is not None:
            await conn.execute(
                "UPDATE signing_keys SET sealed = ? WHERE kind = ? AND public = ?",
                seal(kek, record.kind, record.public, private),
                record.kind,
                record.public,
            )
            sealed_any = True
    if sealed_any:
        await _bump(conn)


async def _insert(conn: Conn, record: KeyRecord, sealed: bytes | None) -> None:
    await conn.execute(
        "INSERT INTO signing_keys (kind, public, not_before, not_after, sealed, published_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        record.kind,
        record.public,
        record.not_before or None,
        record.not_after,
        sealed,
        rfc3339(utc_now()),
    )


async def _lock(conn: Conn) -> None:
    """Take the key set's lock for the transaction (SQLite: its single writer already holds it)."""
    lock = " FOR UPDATE" if conn.dialect == "postgresql" else ""
    await conn.fetchrow(f"SELECT version FROM key_set WHERE id = 1{lock}")


async def _bump(conn: Conn) -> None:
    await conn.execute(
        "UPDATE key_set SET version = version + 1, updated_at = ? WHERE id = 1", rfc3339(utc_now())
    )


def _next_switch(history: tuple[KeyRecord, ...], now: float) -> float | None:
    times = [parse_time(t) for r in history for t in (r.not_before, r.not_after) if t and parse_time(t) > now]
    return min(times, default=None)


def _names(records: list[KeyRecord]) -> str:
    return (
        ", ".join(f"{'verdict signer' if r.kind == VERDICT else 'log key'} {r.public}" for r in records)
        or "none"
    )


def _missing_message(missing: list[KeyRecord], sealed: bool) -> str:
    how = (
        f"They are sealed in the database under the deployment's key-encryption key: start this host with"
        f' the same {KEK_ENV} as the others (docs/deployment.md, "Keys across hosts").'
        if sealed
        else HOW_TO_SHARE
    )
    return (
        f"This host does not hold the signing keys this deployment's database publishes ({_names(missing)})"
        f" and cannot open them, so it refuses to start rather than sign with keys of its own. {how}"
    )
