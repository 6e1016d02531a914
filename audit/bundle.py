"""Proof bundles (`verdict-proof/v1`) and their offline verification.

A bundle carries everything an auditor needs to check some entries of one tenant's log without the
gateway or its database::

    {"format": "verdict-proof/v1",
     "log": {"origin": "<origin>", "vkey": "<signed-note verifier key>"},
     "checkpoint": "<C2SP signed checkpoint>",
     "entries": [{"index": 12, "entry": "<base64 entry bytes>", "inclusion_proof": ["<base64>", …]}, …]}

`verify_bundle` trusts only the verifier key it is given (never the bundle's own `log.vkey`) and
checks, in this order, stopping at the first failure:

1. `checkpoint`: the note is signed by that key, and its origin is the key's name; and `witnesses`,
   when the caller gives a witness policy: the checkpoint's cosignatures meet its quorum;
2. `inclusion`: each entry's leaf hash is in the checkpoint's tree at its index (RFC 9162 §2.1.3.2);
3. `chain`: each entry is a canonical v1 entry of this log's tenant with `seq` = its index, and
   entries at consecutive indexes link (`prev` = leaf hash of the one before; entry 0 links to
   the genesis value);
4. `meaning`: what an entry claims holds — a proposed action's `action_hash` is the hash of its
   action; a verdict's EIP-712 signature recovers to the signer the entry names (and, when the
   caller gives the gateway's published verdict signers, to one of them), and it is the verdict of
   that action, tenant and action hash; an approval or rejection is the digest of its typed data
   (an `Approval`, or a `BulkApproval` listing the action), for that action, hash, tenant, role
   and answer, in a role the action's requirements count, and an EOA's signature recovers to the
   signer it names (a contract wallet's needs its chain: EIP-1271); a verdict of an escalated
   action follows approvals in the bundle that meet every requirement of the decision; an
   execution (`execution.requested`) follows, in the bundle, the verdict of its action, names that
   verdict's EIP-712 digest and action hash, and was requested before the verdict expired; every
   later entry of an execution follows its request, for the same action; and an action has at
   most one `execution.succeeded` (DESIGN invariant 10).

Entry types without a meaning check here are covered by steps 1-3.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.checkpoint import Checkpoint, verify_checkpoint
from audit.entry import GENESIS_PREV, Entry, parse_entry
from audit.errors import AuditError, BundleError
from audit.note import parse_vkey
from audit.proof import verify_inclusion
from audit.rfc6962 import hash_leaf
from audit.witness_policy import WitnessPolicy, verify_witnessed
from crypto.canonical import action_hash
from crypto.eip712 import (
    hash_approval,
    hash_bulk_approval,
    hash_verdict,
    parse_approval_typed_data,
    parse_bulk_approval_typed_data,
    parse_verdict_typed_data,
)
from crypto.errors import CryptoError
from crypto.signing import recover_digest_signer, verify_verdict_signature

__all__ = ["BUNDLE_FORMAT", "VerifiedBundle", "make_bundle", "verify_bundle"]

BUNDLE_FORMAT = "verdict-proof/v1"
_KEYS = {"format", "log", "checkpoint", "entries"}
_ENTRY_KEYS = {"index", "entry", "inclusion_proof"}


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """What a bundle proved: these entries are in the log `checkpoint` commits to."""

    checkpoint: Checkpoint
    entries: list[Entry]
    meaning_checked: dict[str, int]  # entry type -> how many entries of it had their meaning checked


def make_bundle(
    *, origin: str, vkey: str, checkpoint: str, entries: Iterable[tuple[int, bytes, Sequence[bytes]]]
) -> dict[str, Any]:
    """Assemble a bundle from `(index, entry bytes, inclusion proof)` triples."""
    return {
        "format": BUNDLE_FORMAT,
        "log": {"origin": origin, "vkey": vkey},
        "checkpoint": checkpoint,
        "entries": [
            {"index": index, "entry": _b64(raw), "inclusion_proof": [_b64(h) for h in proof]}
            for index, raw, proof in entries
        ],
    }


def verify_bundle(
    bundle: dict[str, Any] | bytes | str,
    vkey: str | Sequence[str],
    *,
    verdict_signers: Collection[str] | None = None,
    witness_policy: WitnessPolicy | None = None,
) -> VerifiedBundle:
    """Verify a bundle trusting only `vkey` (and `verdict_signers`, when given). See the module doc.

    `vkey` may be several keys of the same log (the current one and retired ones, after a log key
    rotation): the checkpoint must verify under one of them. With `witness_policy` (c2sp.org/tlog-policy),
    the checkpoint must also carry cosignatures of the policy's witnesses that meet its quorum.

    Raises `BundleError` naming the step and the entry that failed.
    """
    document = _load(bundle)
    verifiers = []
    for text in [vkey] if isinstance(vkey, str) else list(vkey):
        try:
            verifiers.append(parse_vkey(text))
        except AuditError as error:
            raise BundleError("checkpoint", f"the verifier key is not a signed-note vkey: {error}") from None
    if not verifiers:
        raise BundleError("checkpoint", "no verifier key given")
    # (1) The checkpoint: signed by a trusted key, for the trusted key's log.
    failure = ""
    for verifier in verifiers:
        try:
            checkpoint = verify_checkpoint(document["checkpoint"], verifier)
            break
        except AuditError as error:
            failure = str(error)
    else:
        raise BundleError("checkpoint", failure)
    # (1b) The witnesses: cosignatures meeting the policy's quorum.
    if witness_policy is not None:
        try:
            verify_witnessed(document["checkpoint"], witness_policy, [verifier])
        except AuditError as error:
            raise BundleError("witnesses", str(error)) from None
    tenant = checkpoint.origin.rsplit("/", 1)[-1]
    raws = _entries(document)
    # (2) Inclusion of every entry in the tree the checkpoint signs.
    for index, raw, proof in raws:
        try:
            verify_inclusion(index, checkpoint.size, hash_leaf(raw), proof, checkpoint.root_hash)
        except AuditError as error:
            raise BundleError("inclusion", str(error), index=index) from None
    # (3) Each entry's own fields, and the links between neighbours.
    entries: list[Entry] = []
    previous: Entry | None = None
    for index, raw, _ in raws:
        try:
            entry = parse_entry(raw)
        except AuditError as error:
            raise BundleError("chain", str(error), index=index) from None
        if entry.seq != index:
            raise BundleError("chain", f"entry says seq {entry.seq}", index=index)
        if entry.tenant != tenant:
            raise BundleError(
                "chain", f"entry of tenant {entry.tenant!r} in the log of {tenant!r}", index=index
            )
        if index == 0 and entry.prev != GENESIS_PREV:
            raise BundleError("chain", "the first entry does not link to the genesis value", index=index)
        if previous is not None and previous.seq == index - 1 and entry.prev != previous.leaf_hash.hex():
            raise BundleError("chain", f"prev is not the leaf hash of entry {index - 1}", index=index)
        entries.append(entry)
        previous = entry
    # (4) What the entries claim.
    seen = _Seen(
        proposed={e.action_id: e for e in entries if e.type == "action.proposed"},
        signers=None if verdict_signers is None else {s.lower() for s in verdict_signers},
    )
    checked: dict[str, int] = {}
    for entry in entries:
        check = _MEANING.get(entry.type)
        if check is None:
            continue
        try:
            check(entry, seen)
        except (CryptoError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise BundleError("meaning", f"{entry.type}: {error}", index=entry.seq) from None
        checked[entry.type] = checked.get(entry.type, 0) + 1
    return VerifiedBundle(checkpoint, entries, checked)


# ---- meaning of entries


class _Meaningless(ValueError):
    pass


@dataclass(slots=True)
class _Seen:
    """What the meaning checks know: the bundle's proposals, the trusted verdict signers, and
    the answers met so far (in log order) per action: (signer, role, approve)."""

    proposed: dict[str | None, Entry]
    signers: set[str] | None
    answers: dict[str | None, list[tuple[str, str, bool]]] = field(default_factory=dict)
    # action id -> (verdict digest, expiry in Unix seconds, action hash) of its checked verdict
    verdicts: dict[str | None, tuple[str, int, str]] = field(default_factory=dict)
    executions: dict[str, str | None] = field(default_factory=dict)  # execution id -> action id
    succeeded: dict[str | None, str] = field(default_factory=dict)  # action id -> execution id


def _check_proposed(entry: Entry, seen: _Seen) -> None:
    if entry.action_id is None:
        raise _Meaningless("a proposed action without an action id")
    claimed = entry.data["action_hash"]
    actual = "0x" + action_hash(entry.data["action"]).hex()
    if claimed != actual:
        raise _Meaningless(f"action_hash {claimed} is not the hash of the action ({actual})")


def _check_verdict(entry: Entry, seen: _Seen) -> None:
    data = entry.data
    typed_data, signature, signer = data["typed_data"], data["signature"], data["signer"]
    verify_verdict_signature(typed_data, signature, signer)  # recovers to the signer the entry names
    if seen.signers is not None and signer.lower() not in seen.signers:
        raise _Meaningless(f"signer {signer} is not one of the gateway's published verdict signers")
    _, message = parse_verdict_typed_data(typed_data)
    if message.action_id != entry.action_id or message.tenant != entry.tenant:
        raise _Meaningless("the verdict is for another action or tenant than its entry")
    action = seen.proposed.get(entry.action_id)
    if action is not None:
        if "0x" + message.action_hash.hex() != action.data["action_hash"]:
            raise _Meaningless("the verdict signs another action hash than the proposal's")
        if message.agent != action.data["agent"]:
            raise _Meaningless("the verdict names another agent than the proposal's")
        if message.policy_version != action.data["policy_version"]:
            raise _Meaningless("the verdict names another policy version than the decision's")
        decision = action.data["decision"]
        if decision == "ESCALATE":
            answers = seen.answers.get(entry.action_id, [])
            unmet = _unmet(action.data["approvals_required"], answers)
            if unmet:
                raise _Meaningless(f"a verdict for an escalated action whose approvals do not meet {unmet}")
        elif decision != "ALLOW":
            raise _Meaningless(f"a verdict for an action decided {decision}")
    digest = "0x" + hash_verdict(*parse_verdict_typed_data(typed_data)).hex()
    seen.verdicts[entry.action_id] = (digest, message.expires_at, "0x" + message.action_hash.hex())


def _unix(time: str) -> float:
    return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()


def _check_execution_requested(entry: Entry, seen: _Seen) -> None:
    data = entry.data
    verdict = seen.verdicts.get(entry.action_id)
    if entry.action_id is None or verdict is None:
        raise _Meaningless("an execution without a verdict of its action before it in the bundle")
    digest, expires_at, signed_hash = verdict
    if data["verdict_digest"] != digest:
        raise _Meaningless(f"the execution names verdict {data['verdict_digest']}, not the action's {digest}")
    if data["action_hash"] != signed_hash:
        raise _Meaningless("the execution is for another action hash than its verdict's")
    if _unix(entry.time) >= expires_at:
        raise _Meaningless(f"the execution was requested at {entry.time}, after its verdict expired")
    if data["execution_id"] in seen.executions:
        raise _Meaningless(f"execution {data['execution_id']} requested twice")
    seen.executions[data["execution_id"]] = entry.action_id


def _check_execution_step(entry: Entry, seen: _Seen) -> None:
    execution_id = entry.data["execution_id"]
    if execution_id not in seen.executions or seen.executions[execution_id] != entry.action_id:
        raise _Meaningless(f"{entry.type} of execution {execution_id} without its request for this action")
    if entry.type == "execution.succeeded":
        earlier = seen.succeeded.get(entry.action_id)
        if earlier is not None:
            raise _Meaningless(f"a second succeeded execution of the action (the first: {earlier})")
        seen.succeeded[entry.action_id] = execution_id


def _unmet(requirements: list[dict[str, Any]], answers: list[tuple[str, str, bool]]) -> list[str]:
    """The requirements (by rule) that the answers do not meet. Each signer counts once, in the
    role it signed for; a requirement is {threshold, roles} or {all_of: [{role, min}]}."""
    first: dict[str, tuple[str, bool]] = {}
    for signer, role, approve in answers:
        first.setdefault(signer, (role, approve))
    approving = [role for role, approve in first.values() if approve]
    unmet = []
    for requirement in requirements:
        if "all_of" in requirement:
            met = all(approving.count(q["role"]) >= q["min"] for q in requirement["all_of"])
        else:
            met = sum(role in requirement["roles"] for role in approving) >= requirement["threshold"]
        if not met:
            unmet.append(requirement["rule"])
    return unmet


def _check_answer(entry: Entry, seen: _Seen) -> None:
    data = entry.data
    approve = entry.type == "approval.granted"
    if data["approve"] is not approve:
        raise _Meaningless(f"an {entry.type} entry with approve={data['approve']}")
    typed_data = data["typed_data"]
    primary = typed_data.get("primaryType") if isinstance(typed_data, dict) else None
    action = seen.proposed.get(entry.action_id)
    expected_hash = action.data["action_hash"] if action is not None else None
    if primary == "BulkApproval":
        domain, bulk = parse_bulk_approval_typed_data(typed_data)
        digest = hash_bulk_approval(domain, bulk)
        tenant, role, answer = bulk.tenant, bulk.role, bulk.approve
        hashes = ["0x" + item.action_hash.hex() for item in bulk.items if item.action_id == entry.action_id]
        if not hashes:
            raise _Meaningless("the bulk approval does not list this action")
        signed_hash = hashes[0]
    else:
        domain, message = parse_approval_typed_data(typed_data)
        digest = hash_approval(domain, message)
        tenant, role, answer = message.tenant, message.role, message.approve
        if message.action_id != entry.action_id:
            raise _Meaningless("the approval is for another action than its entry")
        signed_hash = "0x" + message.action_hash.hex()
    if data["digest"] != "0x" + digest.hex():
        raise _Meaningless("digest is not the EIP-712 digest of the typed data")
    if tenant != entry.tenant or role != data["role"] or answer is not approve:
        raise _Meaningless("the signed tenant, role or answer differs from the entry's")
    if expected_hash is not None:
        if signed_hash != expected_hash:
            raise _Meaningless("the approval signs another action hash than the proposal's")
        if role not in _counted_roles(action.data["approvals_required"] or []):
            raise _Meaningless(f"role {role!r} does not count for this action")
    if data["kind"] == "eoa":
        recovered = recover_digest_signer(digest, data["signature"])
        if recovered != data["signer"]:
            raise _Meaningless(f"the signature recovers to {recovered}, not {data['signer']}")
    seen.answers.setdefault(entry.action_id, []).append((data["signer"], role, approve))


def _counted_roles(requirements: list[dict[str, Any]]) -> set[str]:
    roles: set[str] = set()
    for requirement in requirements:
        if "all_of" in requirement:
            roles.update(quota["role"] for quota in requirement["all_of"])
        else:
            roles.update(requirement["roles"])
    return roles


_MEANING: dict[str, Callable[[Entry, _Seen], None]] = {
    "action.proposed": _check_proposed,
    "verdict.issued": _check_verdict,
    "approval.granted": _check_answer,
    "approval.rejected": _check_answer,
    "execution.requested": _check_execution_requested,
    **dict.fromkeys(
        (
            "execution.submitted",
            "execution.succeeded",
            "execution.failed",
            "execution.rollback_requested",
            "execution.rolled_back",
            "execution.rollback_failed",
        ),
        _check_execution_step,
    ),
}


# ---- format


def _load(bundle: dict[str, Any] | bytes | str) -> dict[str, Any]:
    if isinstance(bundle, bytes | str):
        try:
            bundle = json.loads(bundle)
        except ValueError as error:
            raise BundleError("format", f"the bundle is not JSON: {error}") from None
    if not isinstance(bundle, dict) or not _KEYS <= set(bundle):
        raise BundleError("format", f"a bundle is an object with {sorted(_KEYS)}")
    if bundle["format"] != BUNDLE_FORMAT:
        raise BundleError("format", f"format is {bundle['format']!r}, not {BUNDLE_FORMAT!r}")
    if not isinstance(bundle["checkpoint"], str):
        raise BundleError("format", "checkpoint must be the signed note's text")
    return bundle


def _entries(bundle: dict[str, Any]) -> list[tuple[int, bytes, list[bytes]]]:
    items = bundle["entries"]
    if not isinstance(items, list) or not items:
        raise BundleError("format", "entries must be a non-empty list")
    out = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != _ENTRY_KEYS:
            raise BundleError("format", f"entries[{position}] must have exactly {sorted(_ENTRY_KEYS)}")
        index = item["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise BundleError("format", f"entries[{position}].index is not a non-negative int")
        proof = item["inclusion_proof"]
        if not isinstance(proof, list):
            raise BundleError("format", "inclusion_proof must be a list", index=index)
        out.append((index, _unb64(item["entry"], index), [_unb64(h, index) for h in proof]))
    out.sort(key=lambda triple: triple[0])
    for (a, _, _), (b, _, _) in itertools.pairwise(out):
        if a == b:
            raise BundleError("format", "the bundle holds this entry twice", index=a)
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, index: int) -> bytes:
    if not isinstance(text, str):
        raise BundleError("format", "a base64 field is not a string", index=index)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("format", "a base64 field is not valid base64", index=index) from None
