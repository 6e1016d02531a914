"""Proof bundles and the offline verifier (`audit.bundle`, `audit.cli`): what verifies, and every way
a tampered bundle fails, named by step and entry."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import encode_entry, hash_leaf, vkey
from audit.bundle import verify_bundle
from audit.cli import main
from audit.errors import BundleError
from crypto.signing import LocalSigner
from tests.unit.audit.synthetic import ORIGIN, TENANT, TIME, Log, demo_log

OTHER_SIGNER = LocalSigner(b"\x09" * 32)


def fails(bundle, key: str, step: str, index: int | None = None, **kwargs) -> BundleError:
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle, key, **kwargs)
    assert caught.value.step == step, caught.value
    assert caught.value.index == index, caught.value
    return caught.value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_bundle_of_one_action_verifies_with_its_meaning() -> None:
    log = demo_log()
    bundle = log.bundle([3, 4])
    verified = verify_bundle(bundle, log.vkey, verdict_signers=[log.verdict_signer.address])
    assert [e.seq for e in verified.entries] == [3, 4]
    assert verified.checkpoint.size == 7 and verified.checkpoint.origin == ORIGIN
    assert verified.meaning_checked == {"action.proposed": 1, "verdict.issued": 1}
    # bytes or text of the JSON verify the same; entries may come in any order
    bundle["entries"].reverse()
    assert verify_bundle(json.dumps(bundle).encode(), log.vkey).entries == verified.entries


def test_a_whole_log_verifies_including_the_genesis_link() -> None:
    log = demo_log(5)
    verified = verify_bundle(log.bundle(list(range(len(log.entries)))), log.vkey)
    assert len(verified.entries) == 11


def test_the_bundles_own_vkey_is_never_trusted() -> None:
    log = demo_log()
    forger = Log(entries=log.entries)  # same entries, the forger's log key
    forged = forger.bundle([3, 4])
    assert forged["log"]["vkey"] != log.vkey
    assert "no signature by a known key" in str(fails(forged, log.vkey, "checkpoint"))
    # the same key under another name (another log's origin) does not verify either
    other_name = vkey("example.com/verdict/globex", log.log_key.public_key())
    fails(log.bundle([3]), other_name, "checkpoint")
    fails(log.bundle([3]), "not a vkey", "checkpoint")


def test_a_tampered_checkpoint_body_fails_its_signature() -> None:
    log = demo_log()
    bundle = log.bundle([3])
    bundle["checkpoint"] = bundle["checkpoint"].replace(
        f"\n{len(log.entries)}\n", f"\n{len(log.entries) + 1}\n", 1
    )
    fails(bundle, log.vkey, "checkpoint")


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda e: e.update(entry=b64(_flip(base64.b64decode(e["entry"]), 40))), id="flipped-entry-bit"
        ),
        pytest.param(lambda e: e.update(inclusion_proof=e["inclusion_proof"][:-1]), id="truncated-proof"),
        pytest.param(
            lambda e: e.update(inclusion_proof=[*e["inclusion_proof"], b64(b"\0" * 32)]), id="extra-hash"
        ),
        pytest.param(lambda e: e.update(inclusion_proof=e["inclusion_proof"][::-1]), id="swapped-hashes"),
        pytest.param(
            lambda e: e["inclusion_proof"].__setitem__(0, _flip_b64(e["inclusion_proof"][0])),
            id="flipped-proof-bit",
        ),
    ],
)
def test_tampered_entries_and_proofs_fail_inclusion(mutate) -> None:
    log = demo_log()
    bundle = log.bundle([3, 4])
    mutate(bundle["entries"][1])
    fails(bundle, log.vkey, "inclusion", 4)


def test_an_entry_moved_to_another_index_fails_inclusion() -> None:
    log = demo_log()
    bundle = log.bundle([3])
    bundle["entries"][0]["index"] = 5
    fails(bundle, log.vkey, "inclusion", 5)


def test_an_entry_beyond_the_checkpoint_fails_inclusion() -> None:
    log = demo_log()
    bundle = log.bundle([3], size=4)
    bundle["entries"][0]["index"] = 4
    fails(bundle, log.vkey, "inclusion", 4)


def test_broken_links_and_foreign_entries_fail_the_chain_step() -> None:
    log = demo_log(1)  # 0 tenant.created, 1 proposed, 2 verdict
    log.entries.append(
        encode_entry(
            seq=3, tenant=TENANT, type="x", time=TIME, action_id=None, actor="t", data={}, prev="ab" * 32
        )
    )
    fails(log.bundle([2, 3]), log.vkey, "chain", 3)
    verify_bundle(log.bundle([1, 3]), log.vkey)  # not neighbours: each is still proved by inclusion

    log = demo_log(1)
    prev = hash_leaf(log.entries[-1]).hex()
    log.entries.append(
        encode_entry(seq=7, tenant=TENANT, type="x", time=TIME, action_id=None, actor="t", data={}, prev=prev)
    )
    assert "says seq 7" in str(fails(log.bundle([3]), log.vkey, "chain", 3))

    log = demo_log(1)
    log.append("x", {}, tenant="globex")
    assert "globex" in str(fails(log.bundle([3]), log.vkey, "chain", 3))

    log = Log()
    log.entries.append(
        encode_entry(
            seq=0, tenant=TENANT, type="x", time=TIME, action_id=None, actor="t", data={}, prev="cd" * 32
        )
    )
    fails(log.bundle([0]), log.vkey, "chain", 0)

    log = Log()
    log.entries.append(b'{"v": 1}')  # JSON, but no entry
    fails(log.bundle([0]), log.vkey, "chain", 0)


def test_a_verdict_by_an_unpublished_signer_fails_only_when_the_signers_are_given() -> None:
    log = demo_log(0)
    log.propose(1, signer=OTHER_SIGNER)
    bundle = log.bundle([1, 2])
    verify_bundle(bundle, log.vkey)  # the log attests the signer it names
    error = fails(bundle, log.vkey, "meaning", 2, verdict_signers=[log.verdict_signer.address])
    assert "published verdict signers" in str(error)


def test_a_verdict_signature_that_does_not_recover_to_its_named_signer_fails() -> None:
    log = demo_log(0)
    log.propose(1, signer=OTHER_SIGNER)
    verdict = json.loads(log.entries[2])
    verdict["data"]["signer"] = log.verdict_signer.address  # claims our signer, signed by another key
    log.entries.pop()
    log.append("verdict.issued", verdict["data"], verdict["action_id"])
    fails(log.bundle([2]), log.vkey, "meaning", 2)


def test_a_proposal_whose_action_hash_is_not_its_actions_fails() -> None:
    log = demo_log(0)
    log.propose(1, claimed_hash="0x" + "11" * 32)
    assert "is not the hash of the action" in str(fails(log.bundle([1]), log.vkey, "meaning", 1))


def test_a_verdict_for_another_action_hash_than_the_proposal_fails() -> None:
    log = demo_log(0)
    first = log.propose(1)
    second = log.propose(2)
    # move the second verdict under the first proposal's action id: signatures still verify
    verdict = json.loads(log.entries[second[1]])
    verdict["data"]["typed_data"]["message"]["actionId"] = "act_0001"
    log.append("verdict.issued", verdict["data"], "act_0001")
    fails(log.bundle([first[0], len(log.entries) - 1]), log.vkey, "meaning", len(log.entries) - 1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(format="verdict-proof/v2"), "format is"),
        (lambda b: b.pop("checkpoint"), "a bundle is an object"),
        (lambda b: b.update(entries=[]), "non-empty list"),
        (lambda b: b["entries"].append(copy.deepcopy(b["entries"][0])), "holds this entry twice"),
        (lambda b: b["entries"][0].update(entry="not base64!"), "not valid base64"),
        (lambda b: b["entries"][0].update(index=True), "not a non-negative int"),
        (lambda b: b["entries"][0].update(extra=1), "must have exactly"),
    ],
)
def test_malformed_bundles_fail_the_format_step(mutate, message: str) -> None:
    log = demo_log()
    bundle = log.bundle([3])
    mutate(bundle)
    with pytest.raises(BundleError, match=message) as caught:
        verify_bundle(bundle, log.vkey)
    assert caught.value.step == "format"


def test_not_json_is_a_format_error() -> None:
    with pytest.raises(BundleError, match="not JSON"):
        verify_bundle(b"\xff", demo_log().vkey)


def test_command_line_exit_codes_and_messages(tmp_path, capsys) -> None:
    log = demo_log()
    path, key_file, keys = tmp_path / "b.json", tmp_path / "log.vkey", tmp_path / "keys.json"
    path.write_text(json.dumps(log.bundle([3, 4])))
    key_file.write_text(log.vkey + "\n")
    keys.write_text(json.dumps({"verdict_signers": [{"address": log.verdict_signer.address}]}))
    assert main(["verify", str(path), "--vkey", log.vkey, "--keys", str(keys)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK  2 entries (indexes 3-4) of {ORIGIN}")
    assert "1 action.proposed, 1 verdict.issued (verdict signers from keys file)" in out
    assert main(["verify", str(path), "--vkey", f"@{key_file}"]) == 0
    assert main(["verify", str(path), "--vkey", str(key_file)]) == 0
    capsys.readouterr()
    other = vkey(ORIGIN, Ed25519PrivateKey.generate().public_key())
    assert main(["verify", str(path), "--vkey", other]) == 1
    assert capsys.readouterr().err.startswith("FAILED checkpoint:")
    assert main(["verify", str(tmp_path / "missing.json"), "--vkey", log.vkey]) == 2
    keys.write_text("{}")
    assert main(["verify", str(path), "--vkey", log.vkey, "--keys", str(keys)]) == 2


def _flip_b64(text: str) -> str:
    return b64(_flip(base64.b64decode(text), 0))


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]
