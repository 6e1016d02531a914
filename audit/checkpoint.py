"""Transparency-log checkpoints (c2sp.org/tlog-checkpoint): a signed note whose text is a tree head::

    localhost/verdict/acme                            origin: the log's identity, here also its key name
    42                                                tree size, decimal, no leading zeros
    EeIhvRt/yZVE8/dlsMOd0nhuY2w0Ita+wCbR7QOITKw=      RFC 6962 root hash of the tree, base64

followed by optional extension lines, each ending in a newline. In Verdict the log's key name equals the
origin: `sign_checkpoint` refuses anything else and `verify_checkpoint` checks it.

A checkpoint's text is untrusted until its signature verifies, so `verify_checkpoint` opens the note
first and parses the text only after a known key's signature verified over it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from audit.errors import AuditError, CheckpointError, CheckpointOriginError, MalformedCheckpointError
from audit.note import NoteSigner, NoteVerifier, open_note, sign_note
from audit.rfc6962 import HASH_SIZE

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "format_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_checkpoint_with_any",
]

# RFC 9162 §4.10 (and every checkpoint implementation) holds tree sizes in a uint64.
MAX_TREE_SIZE = 2**64 - 1

_TREE_SIZE = re.compile("0|[1-9][0-9]*")  # §Note text 2: ASCII decimal, no leading zeroes, no sign
_ROOT_HASH_BASE64 = re.compile("[A-Za-z0-9+/]{43}=")  # 32 bytes in standard padded base64
_CONTROL_CHARACTER = re.compile("[\x00-\x09\x0b-\x1f]")  # c2sp.org/signed-note §Format


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: `origin`, tree `size`, 32-byte RFC 6962 `root_hash`, opaque `extensions` lines.

    Construction checks that the fields format to a body `parse_checkpoint` accepts; raises
    `MalformedCheckpointError` otherwise.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require_line(self.origin, "origin")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpointError(
                "tree size out of range", expected=f"an int in 0..{MAX_TREE_SIZE}", found=self.size
            )
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpointError(
                "root hash is not 32 bytes", expected="32 bytes", found=self.root_hash
            )
        if isinstance(self.extensions, str):
            raise MalformedCheckpointError(
                "extensions are lines", expected="a tuple of str", found=self.extensions
            )
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for number, line in enumerate(self.extensions, start=4):
            _require_line(line, f"extension line {number}")


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """Return the checkpoint's note text (c2sp.org/tlog-checkpoint §Note text), ending in a newline."""
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        base64.b64encode(checkpoint.root_hash).decode("ascii"),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str | bytes) -> Checkpoint:
    """Parse a checkpoint's note text (c2sp.org/tlog-checkpoint §Note text), strictly: the inverse of
    `format_checkpoint`. Parse only text whose signature verified; `verify_checkpoint` does both.

    Raises `MalformedCheckpointError` if the text is not UTF-8, holds a control character other than
    newline, does not end in a newline, has fewer than three lines, an empty origin, a tree size that is
    not ASCII decimal without sign or leading zeros (or above 2**64 - 1), a root hash that is not 32 bytes
    of canonical standard base64, or an empty extension line.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedCheckpointError(
                "checkpoint is not UTF-8", expected="UTF-8", found=error.object[error.start : error.end]
            ) from error
    if not body.endswith("\n"):
        raise MalformedCheckpointError(
            "checkpoint does not end in a newline", expected="'\\n'", found=body[-40:]
        )
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpointError(
            "checkpoint is too short", expected="origin, tree size and root hash lines", found=body[:120]
        )
    origin, size_text, root_text, *extensions = lines
    for number, line in enumerate(lines, start=1):
        _require_line(line, f"line {number}")
    # §Note text 2: "the ASCII decimal representation of the number of leaves in the tree, with no
    # leading zeroes". `int()` alone would also take "+7", " 7", "0_7" and non-ASCII digits, and raise
    # ValueError past 4300 digits (sys.int_info.default_max_str_digits): measure the length first.
    if (
        _TREE_SIZE.fullmatch(size_text) is None
        or len(size_text) > len(str(MAX_TREE_SIZE))
        or int(size_text) > MAX_TREE_SIZE
    ):
        raise MalformedCheckpointError(
            "checkpoint line 2 is not a tree size",
            expected=f"decimal 0..{MAX_TREE_SIZE} without sign or leading zeros",
            found=size_text,
        )
    # §Note text 3: the base64 of the RFC 6962 root. One spelling only: the canonical one.
    try:
        root_hash = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedCheckpointError(
            "checkpoint line 3 is not base64", expected="the base64 of a 32-byte root hash", found=root_text
        ) from error
    if _ROOT_HASH_BASE64.fullmatch(root_text) is None or base64.b64encode(root_hash).decode() != root_text:
        raise MalformedCheckpointError(
            "checkpoint line 3 is not a root hash", expected="canonical base64 of 32 bytes", found=root_text
        )
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """Return the checkpoint as a signed note, signed by `signer`, whose key name must be the origin.

    Raises `CheckpointOriginError` if the signer's key name is not the checkpoint's origin.
    """
    if checkpoint.origin != signer.name:
        raise CheckpointOriginError(
            "checkpoint origin is not the signer's key name", expected=signer.name, found=checkpoint.origin
        )
    return sign_note(format_checkpoint(checkpoint), signer)


def verify_checkpoint(
    signed_note: str | bytes, verifier: NoteVerifier, expected_origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with the log's key and return it. Steps, tagged `# (n)` below:

    (1) open the note with `verifier` only: a signature by it must verify over the text;
    (2) only then parse the text as a checkpoint;
    (3) the origin must be the verifier's key name, and (4) `expected_origin` when one is given.

    Raises the `NoteError` of `audit.note.open_note` if (1) fails (`UnverifiedNoteError` when the log's
    key did not sign, `InvalidSignatureError` when its signature does not verify, `MalformedNoteError`),
    `MalformedCheckpointError` if (2) does, `CheckpointOriginError` if (3) or (4) does.
    """
    # (1) Open the note. The text is untrusted until this returns.
    note = open_note(signed_note, [verifier])
    # (2) Parse the text, now signed by the log's key.
    checkpoint = parse_checkpoint(note.text)
    # (3) c2sp.org/tlog-checkpoint §Signatures: the key name SHOULD match the origin; Verdict requires it.
    if checkpoint.origin != verifier.name:
        raise CheckpointOriginError(
            "checkpoint origin is not the log's key name", expected=verifier.name, found=checkpoint.origin
        )
    # (4) The log the caller asked about.
    if expected_origin is not None and checkpoint.origin != expected_origin:
        raise CheckpointOriginError(
            "checkpoint is from another log", expected=expected_origin, found=checkpoint.origin
        )
    return checkpoint


def verify_checkpoint_with_any(signed_note: str | bytes, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    """`verify_checkpoint` with the first of `verifiers` (one log's current and retired keys) that
    signed the note. Raises the last key's error if none did, `CheckpointError` if none is given."""
    error: AuditError = CheckpointError("no log key to verify the checkpoint with")
    for verifier in verifiers:
        try:
            return verify_checkpoint(signed_note, verifier)
        except AuditError as failure:
            error = failure
    raise error


def _require_line(line: object, what: str) -> None:
    """One line of a checkpoint text: a non-empty str, no newline or control character, valid Unicode."""
    if not isinstance(line, str) or line == "":
        raise MalformedCheckpointError(f"checkpoint {what} is empty", expected="a non-empty line", found=line)
    control = _CONTROL_CHARACTER.search(line)
    if "\n" in line or control is not None:
        raise MalformedCheckpointError(
            f"checkpoint {what} holds a control character", expected="no control character", found=line
        )
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as error:
        raise MalformedCheckpointError(
            f"checkpoint {what} is not valid Unicode", expected="UTF-8", found=line
        ) from error
