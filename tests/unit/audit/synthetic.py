"""A small, real log built without the gateway: entries, stored tree, signed checkpoints, bundles.

Verdicts are signed with a real secp256k1 key, checkpoints with a real Ed25519 key, so the tests of
`audit.bundle` and `audit.check` tamper with genuine artefacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import (
    Checkpoint,
    encode_entry,
    hash_leaf,
    inclusion_proof,
    new_signer,
    root_hash,
    sign_checkpoint,
    vkey,
)
from audit.bundle import make_bundle
from audit.entry import GENESIS_PREV
from crypto.canonical import action_hash
from crypto.eip712 import DECISION_ALLOW, Domain, VerdictMessage
from crypto.signing import LocalSigner, sign_verdict

TENANT = "acme"
ORIGIN = f"example.com/verdict/{TENANT}"
TIME = "2026-11-30T12:00:00Z"


@dataclass
class Log:
    log_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    verdict_signer: LocalSigner = field(default_factory=lambda: LocalSigner(b"\x07" * 32))
    entries: list[bytes] = field(default_factory=list)

    @property
    def vkey(self) -> str:
        return vkey(ORIGIN, self.log_key.public_key())

    def append(
        self, type: str, data: dict[str, Any], action_id: str | None = None, tenant: str = TENANT
    ) -> int:
        prev = hash_leaf(self.entries[-1]).hex() if self.entries else GENESIS_PREV
        seq = len(self.entries)
        self.entries.append(
            encode_entry(
                seq=seq,
                tenant=tenant,
                type=type,
                time=TIME,
                action_id=action_id,
                actor="test",
                data=data,
                prev=prev,
            )
        )
        return seq

    def propose(
        self, n: int, *, signer: LocalSigner | None = None, claimed_hash: str | None = None
    ) -> list[int]:
        """An ALLOW proposal and its verdict; returns their indexes."""
        action = {"type": "pay_invoice", "amount": f"{n}.00", "vendor": "acme-supplies"}
        digest = action_hash(action)
        action_id = f"act_{n:04d}"
        record = {
            "agent": "ap-bot",
            "action": action,
            "action_hash": claimed_hash or "0x" + digest.hex(),
            "decision": "ALLOW",
            "policy_version": 1,
        }
        first = self.append("action.proposed", record, action_id)
        message = VerdictMessage(
            action_id=action_id,
            action_hash=digest,
            tenant=TENANT,
            agent="ap-bot",
            action_type="pay_invoice",
            decision=DECISION_ALLOW,
            policy_version=1,
            policy_hash=b"\x01" * 32,
            issued_at=1_764_504_000,
            expires_at=1_764_504_060,
        )
        signed = sign_verdict(signer or self.verdict_signer, Domain(1, "0x" + "00" * 20), message)
        data = {"typed_data": signed.typed_data, "signature": signed.signature, "signer": signed.signer}
        return [first, self.append("verdict.issued", data, action_id)]

    def checkpoint(self, size: int | None = None) -> str:
        size = len(self.entries) if size is None else size
        root = root_hash([hash_leaf(raw) for raw in self.entries[:size]])
        return sign_checkpoint(Checkpoint(ORIGIN, size, root), new_signer(ORIGIN, self.log_key))

    def bundle(self, indexes: list[int], size: int | None = None) -> dict[str, Any]:
        size = len(self.entries) if size is None else size
        leaves = [hash_leaf(raw) for raw in self.entries]
        return make_bundle(
            origin=ORIGIN,
            vkey=self.vkey,
            checkpoint=self.checkpoint(size),
            entries=[(i, self.entries[i], inclusion_proof(leaves, i, size)) for i in indexes],
        )


def demo_log(actions: int = 3) -> Log:
    log = Log()
    log.append("tenant.created", {"id": TENANT})
    for n in range(actions):
        log.propose(n + 1)
    return log
