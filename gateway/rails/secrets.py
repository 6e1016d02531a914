"""Rail secrets at rest: AES-256-GCM under the deployment's secrets key, not stored in the clear.

A database dump (or a replica, or a backup) holds only ciphertext; whoever also wants the API
keys of the tenants' banks needs the secrets key: the data dir's file, or, with a key-encryption
key, the KEK too (`gateway.services.secrets_key` says where it lives). Each ciphertext is bound
to its tenant and rail name (the associated data), so a row copied to another rail does not decrypt.
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12
_VERSION = b"\x01"


class SecretsUnreadable(Exception):
    """A stored secret does not decrypt under this gateway's key (another key, or tampering)."""


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
