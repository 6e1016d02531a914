"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys: verifier keys, signing, opening.

A signed note is a text ending in a newline, a blank line, and one or more signature lines: em dash
(U+2014), space, key name, space, base64(4-byte key hash || signature over the text), newline
(`audit.checkpoint` shows one). The text must be ignored unless a trusted key's signature over it
verifies: `open_note` returns it only then.

Verifier keys travel as the strings of golang.org/x/mod/sumdb/note, the reference implementation (the
vectors in tests/vectors/signed_note come from it): `<name>+<hash>+<base64(0x01 || public key)>`.

Stricter than golang.org/x/mod/sumdb/note on purpose: every signature line naming a known key is verified,
repeats included (§Signatures says MUST; `note.Open` skips a repeat of a key it already verified); key
strings must be exact (Go's base64 decoder skips newlines in them); `sign_note` refuses texts that
`open_note` would refuse; two different keys under one name and key hash are refused up front.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.errors import InvalidSignatureError, MalformedNoteError, NoteKeyError, UnverifiedNoteError
from crypto.canonical import sha256

__all__ = [
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "new_signer",
    "new_verifier",
    "open_note",
    "parse_vkey",
    "sign_note",
    "vkey",
]

_ED25519 = b"\x01"  # §Signature types: 0x01 is Ed25519
_SIGNATURE_LINE_PREFIX = "— "  # §Format: U+2014 EM DASH, U+0020 SPACE
# §Format asks verifiers to accept at least 16 signatures; golang.org/x/mod/sumdb/note accepts 100.
_MAX_SIGNATURES = 100
_CONTROL_CHARACTER = re.compile("[\x00-\x09\x0b-\x1f]")  # §Format: below U+0020, other than newline
_KEY_HASH_HEX = re.compile("[0-9a-fA-F]{8}")


@dataclass(frozen=True)
class NoteVerifier:
    """A key that verifies notes: key name, 32-bit key hash, raw 32-byte Ed25519 public key.

    Raises `NoteKeyError` if the name is invalid, the key not 32 bytes or the hash not the key's.
    """

    name: str
    key_hash: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise NoteKeyError("not an Ed25519 public key", expected="32 bytes", found=self.public_key)
        _require_key_hash(self.name, self.public_key, self.key_hash)


@dataclass(frozen=True, eq=False)
class NoteSigner:
    """A key that signs notes: key name, 32-bit key hash, Ed25519 private key (kept out of repr).

    Raises `NoteKeyError` if the name is invalid or the hash not the one of the name and public key.
    """

    name: str
    key_hash: int
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _require_key_hash(self.name, _public_bytes(self.private_key.public_key()), self.key_hash)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key name, the key hash, the signature bytes that follow the key hash."""

    name: str
    key_hash: int
    signature: bytes


@dataclass(frozen=True)
class Note:
    """An opened note: its `text`, the `signatures` that verified (one per key, in note order) and the
    `unverified_signatures` by keys the caller did not name (ignored; each distinct one once)."""

    text: str
    signatures: tuple[NoteSignature, ...]
    unverified_signatures: tuple[NoteSignature, ...]


def new_verifier(name: str, public_key: Ed25519PublicKey) -> NoteVerifier:
    """Return the verifier of `public_key` under key `name`. Raises `NoteKeyError` for an invalid name."""
    _require_name(name)
    raw = _public_bytes(public_key)
    return NoteVerifier(name, _key_hash(name, raw), raw)


def new_signer(name: str, private_key: Ed25519PrivateKey) -> NoteSigner:
    """Return the signer of `private_key` under key `name`. Raises `NoteKeyError` for an invalid name."""
    _require_name(name)
    return NoteSigner(name, _key_hash(name, _public_bytes(private_key.public_key())), private_key)


def vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """Return the verifier key string `<name>+<hash>+<base64(0x01 || public key)>`.

    Raises `NoteKeyError` for an invalid name.
    """
    verifier = new_verifier(name, public_key)
    return f"{name}+{verifier.key_hash:08x}+{_base64(_ED25519 + verifier.public_key)}"


def parse_vkey(text: str) -> NoteVerifier:
    """Return the verifier of a verifier key string `<name>+<hash>+<base64(0x01 || public key)>`.

    Raises `NoteKeyError` if the name is invalid, the hash is not 8 hex digits, the key is not standard
    padded base64 of 0x01 (Ed25519, §Signature types) and 32 bytes, or the hash is not the key's.
    """
    name, _, rest = text.partition("+")
    hash_hex, _, key_base64 = rest.partition("+")
    _require_name(name)
    if _KEY_HASH_HEX.fullmatch(hash_hex) is None:
        raise NoteKeyError("verifier key hash is not 8 hex digits", expected="8 hex digits", found=hash_hex)
    encoded = _decode_base64(key_base64)
    if encoded is None or len(encoded) != 33 or encoded[:1] != _ED25519:
        raise NoteKeyError(
            "verifier key is not an Ed25519 key", expected="base64 of 0x01 and 32 bytes", found=key_base64
        )
    return NoteVerifier(name, int(hash_hex, 16), encoded[1:])


def sign_note(text: str, *signers: NoteSigner) -> str:
    """Return the signed note: `text`, a blank line, then one signature line per signer, in order
    (c2sp.org/signed-note §Format). Ed25519 signatures are deterministic (RFC 8032 §5.1.6), so the same
    text and keys always give the same note.

    Raises `MalformedNoteError` if `text` does not end in a newline, is not valid Unicode or holds a
    control character other than newline. Raises `NoteKeyError` if there are no signers or two share a
    name and key hash.
    """
    text = _check_note_text(text)
    message = text.encode("utf-8")
    if not text.endswith("\n"):
        raise MalformedNoteError("note text does not end in a newline", expected="'\\n'", found=text[-40:])
    labels = [_key_label(signer.name, signer.key_hash) for signer in signers]
    if not signers or len(set(labels)) != len(labels):
        raise NoteKeyError("a note needs signers with distinct keys", expected="distinct keys", found=labels)
    lines = (
        f"{_SIGNATURE_LINE_PREFIX}{signer.name} "
        f"{_base64(signer.key_hash.to_bytes(4, 'big') + signer.private_key.sign(message))}\n"
        for signer in signers
    )
    return text + "\n" + "".join(lines)


def open_note(signed: str | bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Open a signed note: return its text and signatures if a signature by one of `verifiers` verifies.

    The steps, c2sp.org/signed-note §Format and §Signatures, are tagged `# (n)` in the code:
    (1) the note is valid UTF-8 with no control character other than newline;
    (2) the text is everything up to and including the newline before the last blank line; after the
        blank line come one to 100 signature lines, the last ending in a newline;
    (3) each is `— <key name> <base64>` with a valid name and at least 5 bytes, 4 of them the key hash;
    (4) a line whose name and key hash are no known key is ignored (listed in `unverified_signatures`);
    (5) a line whose name and key hash are a known key must verify over the text, repeats included;
    (6) at least one signature by a known key verified.

    Raises `MalformedNoteError` if (1)-(3) fail, `InvalidSignatureError` if (5) does,
    `UnverifiedNoteError` if (6) does, and `NoteKeyError` if two different `verifiers` share a name and
    key hash. A note that fails two steps raises for the first.
    """
    known = _index_verifiers(verifiers)
    # (1) UTF-8, no control characters but newline.
    signed = _check_note_text(signed)
    # (2) The text ends at the last blank line; the signature block after it ends in a newline.
    split = signed.rfind("\n\n")
    text, block = signed[: split + 1], signed[split + 2 :]
    if split < 0 or not block.endswith("\n"):
        raise MalformedNoteError(
            "note does not end in a blank line and signature lines",
            expected="'\\n\\n— <key name> <signature>\\n'",
            found=signed[-60:],
        )
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise MalformedNoteError(
            "note has too many signature lines", expected=f"at most {_MAX_SIGNATURES}", found=len(lines)
        )
    # (3) Each line is a well-formed signature line.
    parsed = [_parse_signature_line(number, line) for number, line in enumerate(lines, start=1)]
    message = text.encode("utf-8")
    verified: dict[tuple[str, int], NoteSignature] = {}
    unverified: dict[NoteSignature, None] = {}
    for signature in parsed:
        verifier = known.get((signature.name, signature.key_hash))
        if verifier is None:
            unverified[signature] = None  # (4) Not a known key: ignored, listed once.
            continue
        # (5) A known key's signature must verify, every time it appears.
        if not _verifies(verifier, message, signature.signature):
            label = _key_label(signature.name, signature.key_hash)
            raise InvalidSignatureError(key=label, signature=signature.signature)
        verified.setdefault((signature.name, signature.key_hash), signature)
    # (6) At least one known key signed.
    if not verified:
        raise UnverifiedNoteError(
            known=tuple(sorted(_key_label(*key) for key in known)),
            signed_by=tuple(_key_label(signature.name, signature.key_hash) for signature in parsed),
        )
    return Note(text, tuple(verified.values()), tuple(unverified))


# ---- helpers


def _key_hash(name: str, public_key: bytes) -> int:
    # §Ed25519 signatures: key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4], big-endian.
    return int.from_bytes(sha256(name.encode("utf-8") + b"\n" + _ED25519 + public_key)[:4], "big")


def _key_label(name: str, key_hash: int) -> str:
    return f"{name}+{key_hash:08x}"


def _is_valid_name(name: object) -> bool:
    # §Format: non-empty, no Unicode spaces, no '+'. Nor control characters or lone surrogates, which
    # no note can hold.
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(character.isspace() or 0xD800 <= ord(character) <= 0xDFFF for character in name)
        and _CONTROL_CHARACTER.search(name) is None
    )


def _require_name(name: object) -> None:
    if not _is_valid_name(name):
        raise NoteKeyError("invalid key name", expected="a non-empty name without spaces or '+'", found=name)


def _require_key_hash(name: str, public_key: bytes, key_hash: object) -> None:
    _require_name(name)
    computed = _key_hash(name, public_key)
    if key_hash != computed:
        found = f"{key_hash:08x}" if isinstance(key_hash, int) else key_hash
        raise NoteKeyError(f"key hash of {name} is not its key's", expected=f"{computed:08x}", found=found)


def _public_bytes(public_key: Ed25519PublicKey) -> bytes:
    if not isinstance(public_key, Ed25519PublicKey):
        raise NoteKeyError("not an Ed25519 key", expected="an Ed25519PublicKey", found=public_key)
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode_base64(text: str) -> bytes | None:
    """Standard padded base64 (RFC 4648 §4), or None. Unused trailing bits are ignored, as Go does."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_note_text(value: str | bytes) -> str:
    """Return `value` as str if it is UTF-8 (or encodable as such) with no control character but newline."""
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        text.encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as error:
        bad = error.object[error.start : error.end]
        raise MalformedNoteError("note is not UTF-8", expected="UTF-8", found=bad) from error
    control = _CONTROL_CHARACTER.search(text)
    if control is not None:
        raise MalformedNoteError(
            "note holds a control character", expected="none but '\\n'", found=control.group()
        )
    return text


def _parse_signature_line(number: int, line: str) -> NoteSignature:
    name, _, signature_base64 = line.removeprefix(_SIGNATURE_LINE_PREFIX).partition(" ")
    decoded = _decode_base64(signature_base64)
    if not line.startswith(_SIGNATURE_LINE_PREFIX) or not _is_valid_name(name) or len(decoded or b"") < 5:
        raise MalformedNoteError(
            f"signature line {number} is malformed",
            expected="'— <key name> <base64 of 4-byte key hash and signature>'",
            found=line[:120],
        )
    assert decoded is not None
    return NoteSignature(name, int.from_bytes(decoded[:4], "big"), decoded[4:])


def _index_verifiers(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, int], NoteVerifier]:
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        if known.setdefault((verifier.name, verifier.key_hash), verifier) != verifier:
            label = _key_label(verifier.name, verifier.key_hash)
            raise NoteKeyError("two verifier keys share a name and key hash", expected="one key", found=label)
    return known


def _verifies(verifier: NoteVerifier, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
