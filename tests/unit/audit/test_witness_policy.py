"""Witness policies (c2sp.org/tlog-policy), cosignatures (c2sp.org/tlog-cosignature), tlog-proof text."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.cosignature import cosign, cosigner_vkey, parse_cosigner_vkey
from audit.errors import BundleError, CosignatureError, WitnessPolicyError
from audit.note import new_signer, vkey
from audit.tlog_proof import format_tlog_proofs, parse_tlog_proofs
from audit.witness_policy import parse_policy, verify_witnessed

ORIGIN = "example.test/log"
LOG = Ed25519PrivateKey.generate()
WITNESSES = {name: Ed25519PrivateKey.generate() for name in ("a", "b", "c")}


def policy_text(quorum: str = "group g 2 a b c\nquorum g") -> str:
    lines = [f"log {vkey(ORIGIN, LOG.public_key())}"]
    lines += [f"witness {n} {cosigner_vkey(f'w.test/{n}', k.public_key())}" for n, k in WITNESSES.items()]
    return "\n".join([*lines, quorum, ""])


def checkpoint(*cosigners: str, timestamp: int = 1_700_000_000) -> str:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 9, b"\x07" * 32), new_signer(ORIGIN, LOG))
    text = signed[: signed.rfind("\n\n") + 1]
    return signed + "".join(cosign(text, f"w.test/{n}", WITNESSES[n], timestamp) for n in cosigners)


def test_a_quorum_is_met_or_refused_with_the_cosigners_found() -> None:
    policy = parse_policy(policy_text())
    assert verify_witnessed(checkpoint("a", "c"), policy).cosigned == {"a": 1_700_000_000, "c": 1_700_000_000}
    with pytest.raises(WitnessPolicyError, match=r"found \['b'\]"):
        verify_witnessed(checkpoint("b"), policy)
    assert set(verify_witnessed(checkpoint(), parse_policy(policy_text("quorum none"))).cosigned) == set()
    nested = "group x any a b\ngroup y all c\ngroup both all x y\nquorum both"
    assert verify_witnessed(checkpoint("b", "c"), parse_policy(policy_text(nested)))
    with pytest.raises(WitnessPolicyError):
        verify_witnessed(checkpoint("a", "b"), parse_policy(policy_text(nested)))


def test_a_cosignature_that_does_not_verify_is_refused_not_ignored() -> None:
    signed = checkpoint("a", "b")
    line = signed.split("\n")[-2]  # b's cosignature: flip a byte of its signature
    flipped = line[:-6] + ("A" if line[-6] != "A" else "B") + line[-5:]
    with pytest.raises(CosignatureError):
        verify_witnessed(signed.replace(line, flipped), parse_policy(policy_text()))


def test_a_log_key_is_no_cosigner_key_and_back() -> None:
    with pytest.raises(CosignatureError):
        parse_cosigner_vkey(vkey("w.test/a", WITNESSES["a"].public_key()))  # type 0x01, not 0x04


@pytest.mark.parametrize(
    "text",
    [
        "quorum g",  # not defined above
        "witness a {a}\nwitness a {b}\nquorum a",  # a name twice
        "witness a {a}\nwitness b {a}\nquorum a",  # a key twice
        "witness a {a}\ngroup g 2 a\nquorum g",  # k above n
        "witness a {a}\ngroup g 0 a\nquorum g",  # k below 1
        "witness a {a}\ngroup g any a a\nquorum g",  # a member twice
        "witness a {a}\nquorum a\nquorum a",  # two quorums
        "witness a {a}",  # no quorum
        "witnes a {a}\nquorum none",  # unknown keyword
    ],
)
def test_policies_the_spec_refuses(text: str) -> None:
    keys = {n: cosigner_vkey(f"w.test/{n}", k.public_key()) for n, k in WITNESSES.items()}
    with pytest.raises(WitnessPolicyError):
        parse_policy(text.format(**keys))


def test_tlog_proofs_round_trip_and_refuse_mutations() -> None:
    bundle = {
        "format": "verdict-proof/v1",
        "log": {"origin": "", "vkey": ""},
        "checkpoint": checkpoint("a"),
        "entries": [{"index": 3, "entry": "eyJ2IjoxfQ==", "inclusion_proof": ["Bw" * 21 + "w="] * 2}],
    }
    text = format_tlog_proofs(bundle)
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra eyJ2IjoxfQ==\nindex 3\n")
    assert parse_tlog_proofs(text) == bundle
    for mutated in (text.replace("index 3", "index 03"), text.replace("extra ", "extras "), text[1:]):
        with pytest.raises(BundleError):
            parse_tlog_proofs(mutated)
