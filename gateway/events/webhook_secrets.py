"""Webhook secrets: Standard Webhooks v1 signing, and their encryption at rest.

A secret is `whsec_` + base64 of 32 random bytes (the form receivers' libraries read). A
delivery is signed as the spec's "Verifying webhook authenticity" says: HMAC-SHA256 with the
secret's bytes over `{webhook-id}.{webhook-timestamp}.{body}`, sent as `v1,<base64>`; during a
rotation's overlap the header carries one signature per secret, space separated.

Secrets are stored sealed with AES-256-GCM under the deployment's secrets key
(`gateway.services.secrets_key`, shared by every host), bound to the row that
holds them (the associated data), so a sealed secret copied to another webhook's row does not
open. A database dump alone reveals no secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_BYTES = 32
_SEALED_PREFIX = "v1:"
_NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """A sealed secret does not open with this deployment's webhook key (another key, or a
    corrupt or moved value). Delivery fails closed: nothing unsigned is ever sent."""


def new_secret() -> str:
    """A fresh `whsec_…` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret (the base64 after the prefix)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64 HMAC-SHA256>` signature of `{id}.{timestamp}.{body}`."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_in_use: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret in use, space separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_in_use)


def seal(key: bytes, secret: str, bound_to: str) -> str:
    """Encrypt a secret for storage; `bound_to` (e.g. the webhook id) must be given to open it."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), bound_to.encode())
    return _SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()


def unseal(key: bytes, stored: str, bound_to: str) -> str:
    """Decrypt a stored secret. Raises SecretUnreadable."""
    if not stored.startswith(_SEALED_PREFIX):
        raise SecretUnreadable("not a sealed webhook secret")
    try:
        raw = base64.b64decode(stored.removeprefix(_SEALED_PREFIX), validate=True)
        opened = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], bound_to.encode())
    except (ValueError, InvalidTag) as exc:
        raise SecretUnreadable("the webhook secret does not open with this deployment's webhook key") from exc
    return opened.decode()
