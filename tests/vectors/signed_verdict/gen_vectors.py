"""Generate signed_verdict_vectors.json: signed verdicts as the gateway issues them, with the
`/v1/keys` answer and the moment of checking, and the verdicts a client must refuse.

A client checks a verdict before acting (gateway/client.py `check_signed_verdict`, the TypeScript
client's `verifyVerdict`): the signature recovers to the signer it names, that signer is a
published verdict signer not retired before issuance, the decision is ALLOW, the action hash is
keccak-256 of the action's RFC 8785 form, and `now` is before expiry. Both clients' tests run
every vector; `want_err` names the failed step.

    .venv/bin/python tests/vectors/signed_verdict/gen_vectors.py > tests/vectors/signed_verdict/signed_verdict_vectors.json
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import UTC, datetime
from typing import Any

from crypto.canonical import action_hash
from crypto.eip712 import DECISION_ALLOW, Domain, VerdictMessage
from crypto.signing import LocalSigner, sign_verdict

# Well-known test keys; never use them for anything real.
GATEWAY = LocalSigner(bytes.fromhex("7c" * 32))
OTHER = LocalSigner(bytes.fromhex("3d" * 32))
ISSUED_AT = 1_780_000_000
TTL = 60
ACTION = {
    "type": "pay_invoice",
    "invoice_id": "inv_8231",
    "amount": "7800.00",
    "asset": "USDC",
    "vendor": "Société Générale ☃",  # RFC 8785: non-ASCII kept as UTF-8
    "lines": [{"sku": "A-1", "qty": 3, "note": "e\u0301"}, {"sku": "B-2", "qty": 10}],
    "meta": {"z": 1, "a": True, "m": None, "n": -0, "big": 9007199254740991},
}


def signed(signer: LocalSigner, action: dict[str, Any], *, decision: int = DECISION_ALLOW) -> dict[str, Any]:
    message = VerdictMessage(
        action_id="act_01JDEMO0000000000000000000",
        action_hash=action_hash(action),
        tenant="acme",
        agent="ap-bot",
        action_type=action["type"],
        decision=decision,
        policy_version=3,
        policy_hash=bytes.fromhex("ab" * 32),
        issued_at=ISSUED_AT,
        expires_at=ISSUED_AT + TTL,
    )
    result = sign_verdict(signer, Domain(8453, "0x" + "00" * 20), message)
    return {"typed_data": result.typed_data, "signature": result.signature, "signer": result.signer,
            "expires_at": datetime.fromtimestamp(ISSUED_AT + TTL, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip


def keys(*signers: tuple[LocalSigner, str | None]) -> dict[str, Any]:
    return {
        "verdict_signers": [
            {"address": s.address, "status": "retired" if until else "active",
             "not_before": "2026-01-01T00:00:00Z", "not_after": until}
            for s, until in signers
        ]
    }  # fmt: skip


def vector(desc: str, verdict: dict[str, Any], *, action: dict[str, Any] = ACTION, published: dict[str, Any] | None = None,
           now: int = ISSUED_AT + 10, want_err: str | None = None) -> dict[str, Any]:  # fmt: skip
    item: dict[str, Any] = {
        "desc": desc,
        "input": {
            "signed_verdict": verdict,
            "action": action,
            "keys": published or keys((GATEWAY, None)),
            "now": now,
        },
    }
    if want_err is None:
        item["want"] = {"action_id": verdict["typed_data"]["message"]["actionId"],
                        "action_hash": verdict["typed_data"]["message"]["actionHash"]}  # fmt: skip
    else:
        item["want_err"] = want_err
    return item


def vectors() -> list[dict[str, Any]]:
    good = signed(GATEWAY, ACTION)
    reordered = dict(reversed(list(ACTION.items())))  # the same action: key order does not matter
    edited = copy.deepcopy(good)
    edited["typed_data"]["message"]["expiresAt"] += 3600  # a longer life the signature does not cover
    flipped = copy.deepcopy(good)
    flipped["signature"] = (
        flipped["signature"][:10]
        + ("0" if flipped["signature"][10] != "0" else "1")
        + flipped["signature"][11:]
    )
    named_other = dict(good, signer=OTHER.address)
    extra_type = copy.deepcopy(good)
    extra_type["typed_data"]["message"]["extra"] = "x"
    return [
        vector("valid", good),
        vector("valid-keys-reordered", good, action=reordered),
        vector("valid-lowercase-signer-in-keys", good,
               published={"verdict_signers": [{**keys((GATEWAY, None))["verdict_signers"][0],
                                               "address": GATEWAY.address.lower()}]}),
        vector("valid-signer-retired-after-issuance", good, published=keys((GATEWAY, "2026-06-01T00:00:00Z"))),
        vector("valid-last-second", good, now=ISSUED_AT + TTL - 1),
        vector("expired-at-expiry", good, now=ISSUED_AT + TTL, want_err="expired"),
        vector("issued-in-the-future", good, now=ISSUED_AT - 3600, want_err="not_yet_valid"),
        vector("other-action-amount", good, action={**ACTION, "amount": "78000.00"}, want_err="action_hash"),
        vector("other-action-unicode-normalized", good,
               action={**ACTION, "lines": [{**ACTION["lines"][0], "note": "\u00e9"}, ACTION["lines"][1]]},
               want_err="action_hash"),
        vector("edited-expiry", edited, want_err="signature"),
        vector("flipped-signature-bit", flipped, want_err="signature"),
        vector("names-another-signer", named_other, published=keys((GATEWAY, None), (OTHER, None)),
               want_err="signature"),
        vector("extra-message-field", extra_type, want_err="typed_data"),
        vector("unpublished-signer", signed(OTHER, ACTION), want_err="unknown_signer"),
        vector("signer-retired-before-issuance", good, published=keys((GATEWAY, "2026-01-02T00:00:00Z")),
               want_err="retired_signer"),
        vector("deny-decision", signed(GATEWAY, ACTION, decision=2), want_err="not_allow"),
    ]  # fmt: skip


if __name__ == "__main__":
    json.dump(vectors(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
