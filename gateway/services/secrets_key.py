"""The deployment's secrets key: the 256-bit key that seals rail API keys (`gateway.rails.secrets`)
and webhook secrets (`gateway.events.webhook_secrets`) at rest. Each feature keeps its own
associated data, so a ciphertext of one never opens as the other's.

Where it lives follows the signing keys (`gateway.services.published_keys`):

- with a key-encryption key (`VERDICT_KEY_ENCRYPTION_KEY`), in the database, table `secret_keys`,
  one row a feature, sealed under the KEK (`gateway.sealing`, bound to the feature). The first
  host creates it, under the key set's lock and in the transaction that establishes the signing
  keys; every other host reads it, and writes no file. A key file a host held from before (see
  below) is adopted instead of a new key, so what was sealed under it stays readable;
- without one (a single host), in the data dir: `secrets.key` (32 random bytes, base64, 0600),
  created on first use.

Before this module each feature had its own file (`rail-secrets.key`, `webhook-secrets.key`). A
data dir that still has one keeps using it for its feature (and, with a KEK, adopts it into that
feature's row), so nothing sealed before becomes unreadable; a new deployment has one key.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from crypto.errors import KeyFileError
from crypto.keys import read_secret_file, write_secret_file
from gateway.clock import rfc3339, utc_now
from gateway.sealing import KEK_ENV, SealError, seal, unseal
from gateway.storage.base import Conn

SECRETS_KEY_FILE = "secrets.key"
RAILS, WEBHOOKS = "rails", "webhooks"
LEGACY_FILES = {RAILS: "rail-secrets.key", WEBHOOKS: "webhook-secrets.key"}
_SEAL_KIND = "secrets-key"


@dataclass(frozen=True, slots=True)
class SecretsKeys:
    """The key each feature seals its secrets with (one key, unless an older file is kept)."""

    rails: bytes
    webhooks: bytes
    created: bool = False  # this call made the deployment's key


def file_keys(data_dir: Path) -> SecretsKeys:
    """The keys without a KEK: each feature's older file if the data dir has one, else
    `secrets.key`, created on first use. Raises `KeyFileError` for a file that is not owner-only
    or not 32 bytes of base64."""
    created = False
    keys = {}
    for feature in (RAILS, WEBHOOKS):
        legacy = data_dir / LEGACY_FILES[feature]
        if legacy.exists():
            keys[feature] = read_key_file(legacy)
            continue
        path = data_dir / SECRETS_KEY_FILE
        if not path.exists():
            created = _create_file(path) or created
        keys[feature] = read_key_file(path)
    return SecretsKeys(keys[RAILS], keys[WEBHOOKS], created)


async def sealed_keys(conn: Conn, data_dir: Path, kek: bytes) -> SecretsKeys:
    """The keys with a KEK, inside the caller's transaction, which holds the key set's lock:
    each feature's row, or (first use) the key this data dir has for it, or the one another
    feature uses, or a new one, sealed into its row. Raises `KeyFileError` for a bad key file,
    `SealError` for a row the KEK does not open."""
    rows = {r["feature"]: r["sealed"] for r in await conn.fetch("SELECT feature, sealed FROM secret_keys")}
    keys: dict[str, bytes] = {}
    for feature, sealed in rows.items():
        try:
            keys[feature] = unseal(kek, _SEAL_KIND, feature, sealed)
        except SealError:
            raise SealError(
                f"the deployment's secrets key ({feature}) does not open with this host's {KEK_ENV};"
                " every host of a deployment must use the same key-encryption key"
            ) from None
    created = False
    for feature in (RAILS, WEBHOOKS):
        if feature in keys:
            continue
        key = _adoptable(data_dir, feature) or next(iter(keys.values()), None)
        if key is None:
            key, created = os.urandom(32), True
        await conn.execute(
            "INSERT INTO secret_keys (feature, sealed, created_at) VALUES (?, ?, ?)",
            feature,
            seal(kek, _SEAL_KIND, feature, key),
            rfc3339(utc_now()),
        )
        keys[feature] = key
    return SecretsKeys(keys[RAILS], keys[WEBHOOKS], created)


def read_key_file(path: Path) -> bytes:
    """Raises `KeyFileError` for a file that is not owner-only or not 32 bytes of base64."""
    try:
        key = base64.b64decode(read_secret_file(path).strip(), validate=True)
    except ValueError:
        raise KeyFileError(f"{path} is not base64") from None
    if len(key) != 32:
        raise KeyFileError(f"{path} must hold 32 bytes of key (base64)")
    return key


def _adoptable(data_dir: Path, feature: str) -> bytes | None:
    """The key a data dir from before the KEK holds for `feature`, if any."""
    for name in (LEGACY_FILES[feature], SECRETS_KEY_FILE):
        if (data_dir / name).exists():
            return read_key_file(data_dir / name)
    return None


def _create_file(path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_secret_file(path, base64.b64encode(os.urandom(32)).decode() + "\n")
    except KeyFileError:
        if not path.exists():  # (another process creating it at the same time is fine)
            raise
        return False
    return True
