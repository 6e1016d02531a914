"""The key-encryption key (KEK) that lets every host of a deployment load the same signing keys.

With `VERDICT_KEY_ENCRYPTION_KEY` set (32 random bytes in base64 or base64url: the output of
`verdict keys new-kek` or `openssl rand -base64 32`), the signing keys live in the database, each private key sealed with AES-256-GCM
under the KEK; any host with the database and the KEK opens them, and no key file is written.
`VERDICT_KEY_ENCRYPTION_KEY_FILE` names a file holding it instead (a Docker or Kubernetes secret).

A sealed key is `b"vk1" ‖ 12-byte nonce ‖ ciphertext ‖ 16-byte tag`; the associated data binds
it to its kind and public key, so a sealed blob moved to another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import KeyFileError

KEK_ENV, KEK_FILE_ENV = "VERDICT_KEY_ENCRYPTION_KEY", "VERDICT_KEY_ENCRYPTION_KEY_FILE"
_VERSION = b"vk1"
_NONCE_BYTES = 12


class SealError(KeyFileError):
    """A sealed key does not open under this KEK (another KEK, or edited bytes)."""


def new_kek() -> str:
    """A fresh key-encryption key, in the form `VERDICT_KEY_ENCRYPTION_KEY` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def kek_from_env(environ: dict[str, str] | os._Environ[str]) -> bytes | None:
    """The KEK the environment names, or None (keys then stay in the data dir's files).

    Raises `KeyFileError` when the variable (or the file it names) is not 32 bytes in base64(url).
    """
    text = environ.get(KEK_ENV) or None
    source = KEK_ENV
    if text is None and environ.get(KEK_FILE_ENV):
        source = environ[KEK_FILE_ENV]
        try:
            text = Path(source).read_text().strip()
        except OSError as error:
            raise KeyFileError(f"{KEK_FILE_ENV}={source}: cannot read it ({error.strerror})") from None
    if text is None:
        return None
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise KeyFileError(
            f"{source} must be 32 random bytes in base64 or base64url; make one with `verdict keys new-kek`"
            " or `openssl rand -base64 32`"
        )
    return key


def seal(kek: bytes, kind: str, public: str, private: bytes) -> bytes:
    """Encrypt one private key under `kek`, bound to its kind and public key."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return _VERSION + nonce + AESGCM(kek).encrypt(nonce, private, _bound(kind, public))


def unseal(kek: bytes, kind: str, public: str, sealed: bytes) -> bytes:
    """Decrypt a sealed private key. Raises `SealError` when it does not open under `kek`."""
    sealed = bytes(sealed)
    if not sealed.startswith(_VERSION) or len(sealed) < len(_VERSION) + _NONCE_BYTES + 16:
        raise SealError(f"the sealed {kind} key {public} is not in a format this gateway reads")
    nonce = sealed[len(_VERSION) : len(_VERSION) + _NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(nonce, sealed[len(_VERSION) + _NONCE_BYTES :], _bound(kind, public))
    except InvalidTag:
        raise SealError(f"the {kind} key {public} does not open with this key-encryption key") from None


def _bound(kind: str, public: str) -> bytes:
    return f"verdict-signing-key/v1\n{kind}\n{public}".encode()
