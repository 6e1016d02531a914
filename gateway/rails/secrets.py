"""Rail secrets at rest: AES-256-GCM under a key that lives with the signing keys, not in the database.

A database dump (or a replica, or a backup) holds only ciphertext; whoever also wants the API
keys of the tenants' banks needs the gateway's data directory. Each ciphertext is bound to its
tenant and rail name (the associated data), so a row copied to another rail does not decrypt.
The key file is `rail-secrets.key` (32 random bytes, base64, mode 0600), created on first use.

Every process of a deployment must read the same key: `load_secret_key` is the one place that
knows where it comes from (move it with the other keys when they move).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import KeyFileError
from crypto.keys import write_secret_file

SECRET_KEY_FILE = "rail-secrets.key"  # noqa: S105 - a file name
_NONCE = 12
_VERSION = b"\x01"


class SecretsUnreadable(Exception):
    """A stored secret does not decrypt under this gateway's key (another key, or tampering)."""


def load_secret_key(data_dir: Path) -> bytes:
    """The 32-byte key that encrypts rail secrets, created in `data_dir` on first use.

    Raises KeyFileError for a key file that cannot be read or is not 32 bytes of base64."""
    path = Path(data_dir) / SECRET_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            write_secret_file(path, base64.b64encode(os.urandom(32)).decode() + "\n")
        except KeyFileError:
            if not path.exists():  # another process created it at the same moment otherwise
                raise
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
    if len(key) != 32:
        raise KeyFileError(f"{path} must hold 32 bytes of base64")
    return key


def _associated(tenant: str, name: str) -> bytes:
    return f"verdict-rail-secrets/v1\x00{tenant}\x00{name}".encode()


def seal(key: bytes, tenant: str, name: str, secrets: dict[str, str]) -> bytes:
    """Encrypt a rail's secret fields (a fresh random nonce each time)."""
    nonce = os.urandom(_NONCE)
    plain = json.dumps(secrets, sort_keys=True).encode()
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plain, _associated(tenant, name))


def unseal(key: bytes, tenant: str, name: str, sealed: bytes) -> dict[str, str]:
    """Decrypt what `seal` made for this tenant and rail. Raises SecretsUnreadable."""
    sealed = bytes(sealed)
    if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != _VERSION:
        raise SecretsUnreadable("not a sealed rail secret")
    try:
        plain = AESGCM(key).decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], _associated(tenant, name))
    except InvalidTag:
        raise SecretsUnreadable(
            f"the secrets of rail {name!r} do not decrypt under this gateway's key"
        ) from None
    return json.loads(plain)
