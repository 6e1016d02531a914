"""Witness cosignatures (c2sp.org/tlog-cosignature, `cosignature/v1`, Ed25519).

A cosignature is a signed-note signature line on a checkpoint, by a witness's key::

    — <witness name> base64(key ID (4) || timestamp (8, big-endian) || Ed25519 signature (64))

over the message `cosignature/v1\\ntime <timestamp>\\n` followed by the checkpoint's note text. The key
ID is SHA-256(<name> || "\\n" || 0x04 || public key)[:4] (0x04: the cosignature/v1 type), so a
witness key never verifies as a log key, nor a log key as a witness's. Verifier keys are vkeys with
type 0x04: `<name>+<key ID hex>+base64(0x04 || public key)`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.errors import CosignatureError, NoteKeyError
from audit.note import Note, NoteSignature
from crypto.canonical import sha256

__all__ = [
    "Cosigner",
    "cosign",
    "cosigned_message",
    "cosigner_vkey",
    "new_cosigner",
    "parse_cosigner_vkey",
    "verify_cosignatures",
]

COSIGNATURE_V1 = b"\x04"  # §Format: the key ID algorithm byte of Ed25519 cosignatures
_SIGNATURE_SIZE = 4 + 8 + 64
MAX_TIMESTAMP = 2**63 - 1


@dataclass(frozen=True)
class Cosigner:
    """A witness's verifier: key name, key ID, raw 32-byte Ed25519 public key."""

    name: str
    key_hash: int
    public_key: bytes

    def label(self) -> str:
        return f"{self.name}+{self.key_hash:08x}"


def _key_hash(name: str, public_key: bytes) -> int:
    return int.from_bytes(sha256(name.encode("utf-8") + b"\n" + COSIGNATURE_V1 + public_key)[:4], "big")


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def new_cosigner(name: str, public_key: Ed25519PublicKey) -> Cosigner:
    """The cosigner of `public_key` under `name`. Raises `NoteKeyError` for an invalid name."""
    _require_name(name)
    raw = _raw(public_key)
    return Cosigner(name, _key_hash(name, raw), raw)


def cosigner_vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """`<name>+<key ID>+base64(0x04 || public key)`. Raises `NoteKeyError` for an invalid name."""
    cosigner = new_cosigner(name, public_key)
    encoded = base64.b64encode(COSIGNATURE_V1 + cosigner.public_key).decode()
    return f"{name}+{cosigner.key_hash:08x}+{encoded}"


def parse_cosigner_vkey(text: str) -> Cosigner:
    """The cosigner of a vkey of type 0x04. Raises `CosignatureError` if it is not one, or its key ID
    is not its key's."""
    name, _, rest = text.strip().partition("+")
    hash_hex, _, key_base64 = rest.partition("+")
    try:
        _require_name(name)
        raw = base64.b64decode(key_base64, validate=True)
        key_hash = int(hash_hex, 16) if len(hash_hex) == 8 else -1
    except (NoteKeyError, binascii.Error, ValueError):
        raise CosignatureError(f"not a cosigner vkey: {text[:120]!r}") from None
    if len(raw) != 33 or raw[:1] != COSIGNATURE_V1 or key_hash != _key_hash(name, raw[1:]):
        raise CosignatureError(f"not an Ed25519 cosignature/v1 vkey with its own key ID: {text[:120]!r}")
    return Cosigner(name, key_hash, raw[1:])


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The message a cosignature signs (§Ed25519 signed message)."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode("utf-8")


def cosign(text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature line, ending in a newline, of checkpoint note `text` at `timestamp`.

    Raises `CosignatureError` for a timestamp outside 0..2**63-1, `NoteKeyError` for an invalid name.
    """
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CosignatureError(f"timestamp {timestamp} is not in 0..2**63-1")
    key_hash = new_cosigner(name, private_key.public_key()).key_hash
    signature = private_key.sign(cosigned_message(text, timestamp))
    payload = key_hash.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + signature
    return f"— {name} {base64.b64encode(payload).decode()}\n"


def verify_cosignatures(note: Note, cosigners: Iterable[Cosigner]) -> dict[str, int]:
    """The cosigners whose cosignature on an opened checkpoint note verifies: name -> timestamp.

    Lines by other keys are ignored (§Format: "ignore any signature lines that don't match").
    Raises `CosignatureError` if a line by a known cosigner's name and key ID does not verify.
    """
    known = {(c.name, c.key_hash): c for c in cosigners}
    verified: dict[str, int] = {}
    lines: list[NoteSignature] = [*note.signatures, *note.unverified_signatures]
    for line in lines:
        cosigner = known.get((line.name, line.key_hash))
        if cosigner is None:
            continue
        raw = line.signature  # the bytes after the 4-byte key ID
        if len(raw) != _SIGNATURE_SIZE - 4:
            raise CosignatureError(f"cosignature by {cosigner.label()} is {len(raw) + 4} bytes, not 76")
        timestamp = int.from_bytes(raw[:8], "big")
        try:
            Ed25519PublicKey.from_public_bytes(cosigner.public_key).verify(
                raw[8:], cosigned_message(note.text, timestamp)
            )
        except (InvalidSignature, ValueError):
            raise CosignatureError(f"cosignature by {cosigner.label()} does not verify") from None
        verified[cosigner.name] = timestamp
    return verified


def _require_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteKeyError("invalid key name", expected="a non-empty name without spaces or '+'", found=name)
