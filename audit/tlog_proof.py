"""Proofs in the c2sp.org/tlog-proof text format, and their conversion to and from bundles.

One proof per entry::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's bytes>
    index <n>
    <base64 inclusion proof hash, from the leaf's sibling up>...
    <empty line>
    <the checkpoint, as signed, with its cosignatures>

Verdict puts the entry's exact bytes in `extra` (the spec's "additional data necessary to reconstruct
the record hash"), so a proof is self-contained; like the spec says, they are trusted only once the
inclusion proof from their leaf hash verifies. Several proofs (one per entry of an action) are
written one after the other. `parse_tlog_proofs` turns them back into a `verdict-proof/v1` bundle so
that one verifier (`audit.bundle.verify_bundle`) checks both formats.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from audit.errors import BundleError

__all__ = ["TLOG_PROOF_HEADER", "format_tlog_proofs", "parse_tlog_proofs"]

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


def format_tlog_proofs(bundle: dict[str, Any]) -> str:
    """The proofs of every entry of a `verdict-proof/v1` bundle, in the tlog-proof format."""
    out = []
    for item in bundle["entries"]:
        lines = [
            TLOG_PROOF_HEADER,
            f"extra {item['entry']}",
            f"index {item['index']}",
            *item["inclusion_proof"],
        ]
        out.append("\n".join(lines) + "\n\n" + bundle["checkpoint"])
    return "".join(out)


def parse_tlog_proofs(text: str, origin: str = "") -> dict[str, Any]:
    """A bundle holding the entries of one or more tlog-proofs over one checkpoint.

    Raises `BundleError` (step `format`) for text that is not such proofs: a missing header, no
    `extra` (the entry) or `index` line, a hash line that is not base64 of 32 bytes, proofs over
    different checkpoints.
    """
    if not text.startswith(TLOG_PROOF_HEADER + "\n"):
        raise BundleError("format", f"a tlog-proof starts with {TLOG_PROOF_HEADER!r}")
    chunks = text.split(TLOG_PROOF_HEADER + "\n")[1:]
    checkpoints, entries = set(), []
    for number, chunk in enumerate(chunks):
        head, separator, checkpoint = chunk.partition("\n\n")
        lines = head.split("\n")
        if (
            not separator
            or len(lines) < 2
            or not lines[0].startswith("extra ")
            or not lines[1].startswith("index ")
        ):
            raise BundleError(
                "format", f"proof {number} lacks 'extra <entry>', 'index <n>' or its checkpoint"
            )
        index_text = lines[1][len("index ") :]
        if not index_text.isdigit() or (index_text != "0" and index_text.startswith("0")):
            raise BundleError("format", f"proof {number}: index {index_text[:30]!r} is not a decimal")
        entry = lines[0][len("extra ") :]
        for line in [entry, *lines[2:]]:
            try:
                raw = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                raise BundleError("format", f"proof {number}: {line[:60]!r} is not base64") from None
            if line is not entry and len(raw) != 32:
                raise BundleError("format", f"proof {number}: {line[:60]!r} is not a 32-byte hash")
        checkpoints.add(checkpoint)
        entries.append(
            {"index": int(index_text), "entry": lines[0][len("extra ") :], "inclusion_proof": lines[2:]}
        )
    if len(checkpoints) != 1:
        raise BundleError("format", "the proofs are over different checkpoints")
    return {
        "format": "verdict-proof/v1",
        "log": {"origin": origin, "vkey": ""},
        "checkpoint": checkpoints.pop(),
        "entries": entries,
    }
