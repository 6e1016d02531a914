"""Witness policies (c2sp.org/tlog-policy) and checking a checkpoint against one.

A policy file lists the logs a verifier accepts, the witnesses it knows and the quorum of them that
must have cosigned a checkpoint::

    log <log vkey> [<url>]
    witness <name> <cosigner vkey> [<url>]
    group <name> all|any|<k> <member>...
    quorum <name>|none

Names are local to the file; a group or the quorum may refer only to names defined above it, and a
member may appear once per group. `verify_witnessed` opens a checkpoint with the policy's log keys,
verifies the cosignatures of its witnesses and checks that they meet the quorum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audit.checkpoint import Checkpoint, parse_checkpoint
from audit.cosignature import Cosigner, parse_cosigner_vkey, verify_cosignatures
from audit.errors import AuditError, WitnessPolicyError
from audit.note import NoteVerifier, open_note, parse_vkey

__all__ = ["WitnessPolicy", "Witnessed", "parse_policy", "verify_witnessed"]

_WHITESPACE = re.compile("[ \t]+")
_DECIMAL = re.compile("[1-9][0-9]*")


@dataclass(frozen=True)
class WitnessEntry:
    name: str
    cosigner: Cosigner
    url: str | None


@dataclass
class WitnessPolicy:
    """A parsed policy: `logs`, `witnesses` by local name, `groups` (name -> (k, members)), `quorum`
    (a witness or group name, or "none")."""

    logs: list[NoteVerifier] = field(default_factory=list)
    log_urls: dict[str, str] = field(default_factory=dict)
    witnesses: dict[str, WitnessEntry] = field(default_factory=dict)
    groups: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    quorum: str = ""

    def satisfied_by(self, cosigned: set[str]) -> bool:
        """Whether the witnesses named in `cosigned` (local names) meet the quorum."""
        return self.quorum == "none" or self._witnessed(self.quorum, cosigned)

    def _witnessed(self, name: str, cosigned: set[str]) -> bool:
        if name in self.witnesses:
            return name in cosigned
        k, members = self.groups[name]
        return sum(self._witnessed(member, cosigned) for member in members) >= k


@dataclass(frozen=True)
class Witnessed:
    """A checkpoint that met a policy, and the witnesses (local names -> timestamp) that cosigned it."""

    checkpoint: Checkpoint
    cosigned: dict[str, int]


def parse_policy(text: str) -> WitnessPolicy:
    """Parse a policy file. Raises `WitnessPolicyError` naming the line that is wrong: an unknown
    keyword, a bad vkey, a duplicate key or name, a reference to a name not defined above, a
    threshold outside 1..n, none or several quorum lines."""
    policy = WitnessPolicy()
    quorums = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t")
        if not line or line.startswith("#"):
            continue
        if any(ord(ch) < 0x20 and ch != "\t" for ch in line):
            raise WitnessPolicyError(f"policy line {number} holds a control character")
        words = _WHITESPACE.split(line)
        try:
            quorums += _parse_line(policy, words)
        except (AuditError, ValueError) as error:
            raise WitnessPolicyError(f"policy line {number} ({words[0]}): {error}") from None
    if quorums != 1:
        raise WitnessPolicyError(f"a policy has exactly one quorum line, this one has {quorums}")
    return policy


def _parse_line(policy: WitnessPolicy, words: list[str]) -> int:
    keyword, arguments = words[0], words[1:]
    defined = set(policy.witnesses) | set(policy.groups)
    if keyword == "log" and len(arguments) in (1, 2):
        verifier = parse_vkey(arguments[0])
        if any(log.public_key == verifier.public_key for log in policy.logs):
            raise ValueError("duplicate log key")
        policy.logs.append(verifier)
        if len(arguments) == 2:
            policy.log_urls[verifier.name] = arguments[1]
        return 0
    if keyword == "witness" and len(arguments) in (2, 3):
        name, cosigner = arguments[0], parse_cosigner_vkey(arguments[1])
        if name in defined or name == "none":
            raise ValueError(f"name {name!r} is already defined")
        if any(w.cosigner.public_key == cosigner.public_key for w in policy.witnesses.values()):
            raise ValueError("duplicate witness key")
        policy.witnesses[name] = WitnessEntry(name, cosigner, arguments[2] if len(arguments) == 3 else None)
        return 0
    if keyword == "group" and len(arguments) >= 3:
        name, threshold, members = arguments[0], arguments[1], arguments[2:]
        if name in defined or name == "none":
            raise ValueError(f"name {name!r} is already defined")
        if len(set(members)) != len(members) or not set(members) <= defined:
            raise ValueError("members must be distinct names defined above")
        if threshold in ("all", "any"):
            k = len(members) if threshold == "all" else 1
        elif _DECIMAL.fullmatch(threshold) and int(threshold) <= len(members):
            k = int(threshold)
        else:
            raise ValueError(f"threshold {threshold!r} is not all, any or 1..{len(members)}")
        policy.groups[name] = (k, members)
        return 0
    if keyword == "quorum" and len(arguments) == 1:
        if arguments[0] != "none" and arguments[0] not in defined:
            raise ValueError(f"quorum {arguments[0]!r} is not defined above")
        policy.quorum = arguments[0]
        return 1
    raise ValueError("not a log, witness, group or quorum line of the right length")


def verify_witnessed(
    signed_note: str | bytes, policy: WitnessPolicy, log_verifiers: list[NoteVerifier] | None = None
) -> Witnessed:
    """Verify a checkpoint under a policy. Steps, tagged `# (n)`:

    (1) open the note with the log keys (`log_verifiers`, else the policy's logs) and parse it;
    (2) verify the cosignatures of the policy's witnesses (other lines are ignored);
    (3) check that the witnesses that cosigned meet the quorum.

    Raises the `NoteError`/`CheckpointError` of (1), `CosignatureError` if a witness's line does not
    verify, `WitnessPolicyError` if the quorum is not met (with the witnesses found).
    """
    # (1) The log's signature first: nothing is parsed before it verified.
    logs = log_verifiers if log_verifiers is not None else policy.logs
    if not logs:
        raise WitnessPolicyError("the policy names no log, and no log key was given")
    note = open_note(signed_note, logs)
    checkpoint = parse_checkpoint(note.text)
    # (2) Cosignatures by the policy's witnesses.
    by_key = {(w.cosigner.name, w.cosigner.key_hash): name for name, w in policy.witnesses.items()}
    verified = verify_cosignatures(note, [w.cosigner for w in policy.witnesses.values()])
    cosigned = {
        by_key[(w.cosigner.name, w.cosigner.key_hash)]: verified[w.cosigner.name]
        for w in policy.witnesses.values()
        if w.cosigner.name in verified
    }
    # (3) The quorum.
    if not policy.satisfied_by(set(cosigned)):
        raise WitnessPolicyError(
            f"checkpoint of size {checkpoint.size} does not meet the witness quorum",
            expected=f"quorum {policy.quorum}",
            found=sorted(cosigned),
        )
    return Witnessed(checkpoint, cosigned)
