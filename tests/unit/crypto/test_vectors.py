"""EIP-712 vectors made by viem and cross-checked by ethers (tests/vectors/eip712/gen_vectors.mjs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import crypto.errors
from crypto import (
    LocalSigner,
    approval_typed_data,
    bulk_approval_typed_data,
    hash_approval,
    hash_bulk_approval,
    hash_verdict,
    parse_approval_typed_data,
    parse_bulk_approval_typed_data,
    parse_verdict_typed_data,
    recover_digest_signer,
    sign_approval,
    sign_bulk_approval,
    sign_verdict,
    verdict_typed_data,
    verify_approval_signature,
    verify_bulk_approval_signature,
    verify_verdict_signature,
)

VECTORS_PATH = Path(__file__).parents[2] / "vectors" / "eip712" / "verdict_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
SIGNING = [vector for vector in VECTORS if "private_key" in vector["input"]]
VERIFYING = [vector for vector in VECTORS if "private_key" not in vector["input"]]

# primaryType -> (parse, build, hash, sign, verify)
SCHEMAS = {
    "Verdict": (
        parse_verdict_typed_data,
        verdict_typed_data,
        hash_verdict,
        sign_verdict,
        verify_verdict_signature,
    ),
    "Approval": (
        parse_approval_typed_data,
        approval_typed_data,
        hash_approval,
        sign_approval,
        verify_approval_signature,
    ),
    "BulkApproval": (
        parse_bulk_approval_typed_data,
        bulk_approval_typed_data,
        hash_bulk_approval,
        sign_bulk_approval,
        verify_bulk_approval_signature,
    ),
}


def test_vector_file_covers_what_it_promises() -> None:
    descriptions = [vector["desc"] for vector in VECTORS]
    assert len(set(descriptions)) == len(descriptions)
    assert len(SIGNING) >= 30
    assert {vector["input"]["typed_data"]["primaryType"] for vector in SIGNING} == set(SCHEMAS)
    item_counts = {
        len(vector["input"]["typed_data"]["message"]["items"])
        for vector in SIGNING
        if vector["input"]["typed_data"]["primaryType"] == "BulkApproval"
    }
    assert {1, 3, 100} <= item_counts
    bulk_mutations = {vector["desc"] for vector in VERIFYING if vector["desc"].startswith("bulk-approval/")}
    assert {
        "bulk-approval/three-items/items-reordered",
        "bulk-approval/three-items/item-dropped",
        "bulk-approval/three-items/modified-items[1]-actionHash-bit-0",
    } <= bulk_mutations
    # Approvals presented with v as the recovery id, both parities, must verify.
    presented_v = {
        int(vector["input"]["signature"][-2:], 16)
        for vector in VERIFYING
        if vector["input"]["typed_data"]["primaryType"] == "Approval" and "want" in vector
    }
    assert {0, 1} <= presented_v
    chain_ids = {vector["input"]["typed_data"]["domain"]["chainId"] for vector in SIGNING}
    assert {1, 8453, 2**256 - 1} <= chain_ids
    assert {"SignatureError", "SignatureMismatchError", "TypedDataError"} == {
        vector["want_err"] for vector in VERIFYING if "want_err" in vector
    }


@pytest.mark.parametrize("vector", SIGNING, ids=[vector["desc"] for vector in SIGNING])
def test_signing_vector(vector: dict) -> None:
    typed_data = vector["input"]["typed_data"]
    want = vector["want"]
    parse, build, hash_message, sign, verify = SCHEMAS[typed_data["primaryType"]]
    domain, message = parse(typed_data)
    signer = LocalSigner(bytes.fromhex(vector["input"]["private_key"][2:]))

    assert build(domain, message) == typed_data
    assert "0x" + hash_message(domain, message).hex() == want["digest"]
    signed = sign(signer, domain, message)
    assert signed.signature == want["signature"]
    assert signed.signer == signer.address == want["signer"]
    assert recover_digest_signer(bytes.fromhex(want["digest"][2:]), want["signature"]) == want["signer"]
    verify(typed_data, want["signature"], want["signer"])


@pytest.mark.parametrize("vector", VERIFYING, ids=[vector["desc"] for vector in VERIFYING])
def test_verifying_vector(vector: dict) -> None:
    vector_input = vector["input"]
    verify = SCHEMAS[vector_input["typed_data"]["primaryType"]][4]
    if "want_err" in vector:
        with pytest.raises(getattr(crypto.errors, vector["want_err"])):
            verify(vector_input["typed_data"], vector_input["signature"], vector_input["expected_signer"])
    else:
        verify(vector_input["typed_data"], vector_input["signature"], vector_input["expected_signer"])
        assert vector_input["expected_signer"] == vector["want"]["signer"]
