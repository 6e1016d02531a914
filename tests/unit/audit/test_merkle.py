"""RFC 6962 Merkle tree and RFC 9162 proofs (`audit.rfc6962`, `audit.proof`).

Three independent checks:

1. vectors made by golang.org/x/mod/sumdb/tlog (tests/vectors/rfc6962/gen_vectors.go): roots and proofs
   must match byte for byte, and the verifiers must accept and reject exactly what tlog does;
2. a naive reference written straight from RFC 6962 §2.1 (recursive MTH, PATH, PROOF/SUBPROOF) in this
   file, cross-checked against the fast code on every size up to 200 and on random indexes and old sizes;
3. errors carry their evidence: tree size, expected root, calculated root.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.errors
import audit.proof
from audit import (
    EMPTY_ROOT,
    AuditError,
    ConsistencyProofError,
    InclusionProofError,
    MerkleTreeError,
    ProofError,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_proof,
    leaf_hash,
    root_from_inclusion_proof,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS_PATH = Path(__file__).parents[2] / "vectors" / "rfc6962" / "rfc6962_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
# Entry i of the vectors' log is the ASCII bytes "entry-<i>" (gen_vectors.go).
VECTOR_LEAVES = [hash_leaf(f"entry-{i}".encode()) for i in range(1000)]


def vectors(op: str) -> list[dict]:
    return [vector for vector in VECTORS if vector["input"]["op"] == op]


def hashes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(value) for value in values]


@cache
def vector_root(size: int) -> bytes:
    return root_hash(VECTOR_LEAVES[:size])


# ---- 1. vectors from Go's sumdb/tlog


def test_vector_file_covers_what_it_promises() -> None:
    descriptions = [vector["desc"] for vector in VECTORS]
    assert len(set(descriptions)) == len(descriptions)
    assert {vector["input"]["size"] for vector in vectors("root_hash")} == {*range(71), 127, 128, 129, 1000}
    assert {vector["want_err"] for vector in VECTORS if "want_err" in vector} == {
        "InclusionProofError",
        "ConsistencyProofError",
    }
    mutations = {vector["desc"].split(": ")[-1] for vector in VECTORS if "want_err" in vector}
    assert {
        "wrong-leaf",
        "wrong-index",
        "wrong-size+1",
        "index-equals-size",
        "truncated-proof",
        "extended-proof",
        "modified-proof[0]-bit-3",
        "swapped-roots",
        "swapped-sizes",
        "wrong-new-size+1",
        "wrong-old-size-1",
        "old-root-prepended",
    } <= mutations
    assert VECTORS_PATH.stat().st_size < 600_000


def test_tlog_hashes_leaves_and_nodes_as_rfc6962() -> None:
    for vector in vectors("hash_leaf"):
        entry = bytes.fromhex(vector["input"]["entry_hex"])
        assert hash_leaf(entry).hex() == vector["want"] == leaf_hash(entry).hex()
    for vector in vectors("hash_children"):
        left, right = bytes.fromhex(vector["input"]["left"]), bytes.fromhex(vector["input"]["right"])
        assert hash_children(left, right).hex() == vector["want"]


@pytest.mark.parametrize("vector", vectors("root_hash"), ids=lambda vector: vector["desc"])
def test_root_vector(vector: dict) -> None:
    assert root_hash(VECTOR_LEAVES[: vector["input"]["size"]]).hex() == vector["want"]


@pytest.mark.parametrize("vector", vectors("inclusion_proof"), ids=lambda vector: vector["desc"])
def test_inclusion_proof_vector(vector: dict) -> None:
    index, size = vector["input"]["index"], vector["input"]["size"]
    proof = inclusion_proof(VECTOR_LEAVES, index, size)
    assert proof == hashes(vector["want"])
    assert root_from_inclusion_proof(index, size, VECTOR_LEAVES[index], proof) == vector_root(size)
    verify_inclusion(index, size, VECTOR_LEAVES[index], proof, vector_root(size))


@pytest.mark.parametrize("vector", vectors("consistency_proof"), ids=lambda vector: vector["desc"])
def test_consistency_proof_vector(vector: dict) -> None:
    old_size, new_size = vector["input"]["old_size"], vector["input"]["new_size"]
    proof = consistency_proof(VECTOR_LEAVES, old_size, new_size)
    assert proof == hashes(vector["want"])
    verify_consistency(old_size, new_size, vector_root(old_size), vector_root(new_size), proof)


@pytest.mark.parametrize("vector", vectors("verify_inclusion"), ids=lambda vector: vector["desc"])
def test_verify_inclusion_vector(vector: dict) -> None:
    given_ = vector["input"]
    args = (given_["index"], given_["size"], bytes.fromhex(given_["leaf_hash"]), hashes(given_["proof"]))
    root = bytes.fromhex(given_["root"])
    if "want_err" not in vector:
        verify_inclusion(*args, root)
        assert root_from_inclusion_proof(*args) == root
        return
    with pytest.raises(getattr(audit.errors, vector["want_err"])) as caught:
        verify_inclusion(*args, root)
    if caught.value.calculated is not None:  # a well-formed proof that leads elsewhere
        assert caught.value.expected == root != caught.value.calculated
        assert caught.value.calculated == root_from_inclusion_proof(*args)


@pytest.mark.parametrize("vector", vectors("verify_consistency"), ids=lambda vector: vector["desc"])
def test_verify_consistency_vector(vector: dict) -> None:
    given_ = vector["input"]
    old_root, new_root = bytes.fromhex(given_["old_root"]), bytes.fromhex(given_["new_root"])
    args = (given_["old_size"], given_["new_size"], old_root, new_root, hashes(given_["proof"]))
    if "want_err" not in vector:
        verify_consistency(*args)
        return
    with pytest.raises(getattr(audit.errors, vector["want_err"])) as caught:
        verify_consistency(*args)
    if caught.value.calculated is not None:
        assert caught.value.expected in (old_root, new_root)
        assert caught.value.expected != caught.value.calculated
        assert caught.value.tree_size in (given_["old_size"], given_["new_size"])


# ---- 2. a naive reference, straight from RFC 6962 §2.1

ENTRIES = [f"reference entry {i}".encode() + bytes([i % 256]) for i in range(200)]
LEAVES = [hash_leaf(entry) for entry in ENTRIES]


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1), found by counting up."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def reference_mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) over ENTRIES (RFC 6962 §2.1)."""
    if hi == lo:
        return _sha256(b"")
    if hi - lo == 1:
        return _sha256(b"\x00" + ENTRIES[lo])
    k = _split(hi - lo)
    return _sha256(b"\x01" + reference_mth(lo, lo + k) + reference_mth(lo + k, hi))


def reference_path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) (RFC 6962 §2.1.1), m relative to lo."""
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if m < k:
        return [*reference_path(m, lo, lo + k), reference_mth(lo + k, hi)]
    return [*reference_path(m - k, lo + k, hi), reference_mth(lo, lo + k)]


def reference_subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b) (RFC 6962 §2.1.2), m relative to lo."""
    if m == hi - lo:
        return [] if complete else [reference_mth(lo, hi)]
    k = _split(hi - lo)
    if m <= k:
        return [*reference_subproof(m, lo, lo + k, complete), reference_mth(lo + k, hi)]
    return [*reference_subproof(m - k, lo + k, hi, False), reference_mth(lo, lo + k)]


def test_root_matches_reference_on_every_size_up_to_200() -> None:
    for size in range(201):
        assert root_hash(LEAVES[:size]) == reference_mth(0, size), size


def test_proofs_match_reference_on_every_index_and_old_size_up_to_24() -> None:
    for size in range(1, 25):
        for index in range(size):
            assert inclusion_proof(LEAVES, index, size) == reference_path(index, 0, size), (index, size)
        for old_size in range(1, size + 1):
            proof = consistency_proof(LEAVES, old_size, size)
            assert proof == reference_subproof(old_size, 0, size, True), (old_size, size)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 200))
    return size, draw(st.integers(0, size - 1))


@st.composite
def old_and_new_size(draw: st.DrawFn) -> tuple[int, int]:
    new_size = draw(st.integers(1, 200))
    return draw(st.integers(1, new_size)), new_size


@settings(max_examples=300, deadline=None)
@given(tree_and_index())
def test_inclusion_proof_matches_reference_and_verifies(case: tuple[int, int]) -> None:
    size, index = case
    proof = inclusion_proof(LEAVES, index, size)
    assert proof == reference_path(index, 0, size)
    assert root_from_inclusion_proof(index, size, LEAVES[index], proof) == reference_mth(0, size)
    verify_inclusion(index, size, LEAVES[index], proof, reference_mth(0, size))


@settings(max_examples=300, deadline=None)
@given(old_and_new_size())
def test_consistency_proof_matches_reference_and_verifies(case: tuple[int, int]) -> None:
    old_size, new_size = case
    proof = consistency_proof(LEAVES, old_size, new_size)
    assert proof == reference_subproof(old_size, 0, new_size, True)
    verify_consistency(old_size, new_size, reference_mth(0, old_size), reference_mth(0, new_size), proof)


def _flip(value: bytes, bit: int) -> bytes:
    return value[: bit // 8] + bytes([value[bit // 8] ^ (1 << (bit % 8))]) + value[bit // 8 + 1 :]


@settings(max_examples=200, deadline=None)
@given(tree_and_index(), st.data())
def test_any_flipped_bit_breaks_an_inclusion_proof(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    proof, root = inclusion_proof(LEAVES, index, size), reference_mth(0, size)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")  # -2 leaf, -1 root, else proof[i]
    bit = data.draw(st.integers(0, 255), label="bit")
    leaf = _flip(LEAVES[index], bit) if target == -2 else LEAVES[index]
    root = _flip(root, bit) if target == -1 else root
    proof = [_flip(h, bit) if i == target else h for i, h in enumerate(proof)]
    with pytest.raises(InclusionProofError) as caught:
        verify_inclusion(index, size, leaf, proof, root)
    assert caught.value.expected == root != caught.value.calculated


@settings(max_examples=200, deadline=None)
@given(old_and_new_size(), st.data())
def test_any_flipped_bit_breaks_a_consistency_proof(case: tuple[int, int], data: st.DataObject) -> None:
    old_size, new_size = case
    proof = consistency_proof(LEAVES, old_size, new_size)
    old_root, new_root = reference_mth(0, old_size), reference_mth(0, new_size)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")  # -2 old root, -1 new root
    bit = data.draw(st.integers(0, 255), label="bit")
    old_root = _flip(old_root, bit) if target == -2 else old_root
    new_root = _flip(new_root, bit) if target == -1 else new_root
    proof = [_flip(h, bit) if i == target else h for i, h in enumerate(proof)]
    with pytest.raises(ConsistencyProofError) as caught:
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    assert caught.value.expected != caught.value.calculated


@settings(max_examples=200, deadline=None)
@given(tree_and_index(), st.booleans())
def test_a_proof_one_hash_too_long_or_short_is_malformed(case: tuple[int, int], longer: bool) -> None:
    size, index = case
    proof = inclusion_proof(LEAVES, index, size)
    if not longer and not proof:
        return
    proof = [*proof, LEAVES[0]] if longer else proof[:-1]
    with pytest.raises(InclusionProofError, match="wrong length") as caught:
        root_from_inclusion_proof(index, size, LEAVES[index], proof)
    assert caught.value.expected is caught.value.calculated is None


def test_building_a_proof_hashes_each_node_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def counting_hash_children(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return hash_children(left, right)

    monkeypatch.setattr(audit.proof, "hash_children", counting_hash_children)
    leaves = VECTOR_LEAVES[:1000]
    inclusion_proof(leaves, 500, 1000)
    assert calls == 999  # one per interior node: O(n), not O(n log n) or O(n**2)
    calls = 0
    consistency_proof(leaves, 300, 1000)
    assert calls == 999


# ---- 3. errors and edge cases


def test_errors_form_one_tree() -> None:
    assert issubclass(InclusionProofError, ProofError)
    assert issubclass(ConsistencyProofError, ProofError)
    assert issubclass(ProofError, AuditError)
    assert issubclass(MerkleTreeError, AuditError)
    assert not issubclass(MerkleTreeError, ProofError)


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root_hash([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_inclusion_error_carries_expected_and_calculated_roots() -> None:
    proof = inclusion_proof(LEAVES, 3, 7)
    wrong_root = reference_mth(0, 6)
    with pytest.raises(InclusionProofError) as caught:
        verify_inclusion(3, 7, LEAVES[3], proof, wrong_root)
    error = caught.value
    assert (error.tree_size, error.expected, error.calculated) == (7, wrong_root, reference_mth(0, 7))
    assert wrong_root.hex() in str(error) and reference_mth(0, 7).hex() in str(error)


def test_consistency_error_names_the_old_tree_when_its_root_is_wrong() -> None:
    proof = consistency_proof(LEAVES, 5, 13)
    wrong_old = reference_mth(0, 4)
    with pytest.raises(ConsistencyProofError) as caught:
        verify_consistency(5, 13, wrong_old, reference_mth(0, 13), proof)
    error = caught.value
    assert (error.tree_size, error.expected, error.calculated) == (5, wrong_old, reference_mth(0, 5))


def test_consistency_error_names_the_new_tree_when_its_root_is_wrong() -> None:
    proof = consistency_proof(LEAVES, 5, 13)
    wrong_new = reference_mth(0, 12)
    with pytest.raises(ConsistencyProofError) as caught:
        verify_consistency(5, 13, reference_mth(0, 5), wrong_new, proof)
    error = caught.value
    assert (error.tree_size, error.expected, error.calculated) == (13, wrong_new, reference_mth(0, 13))


def test_old_root_of_a_power_of_two_size_is_checked_through_the_new_root() -> None:
    # RFC 9162 §2.1.4.2 step 2 puts first_hash itself at the start of the path, so fr always equals it;
    # a wrong old root then shows as a wrong calculated new root.
    proof = consistency_proof(LEAVES, 8, 13)
    with pytest.raises(ConsistencyProofError) as caught:
        verify_consistency(8, 13, reference_mth(0, 7), reference_mth(0, 13), proof)
    assert caught.value.tree_size == 13 and caught.value.expected == reference_mth(0, 13)


def test_empty_and_equal_trees_are_consistent_with_an_empty_proof() -> None:
    assert consistency_proof(LEAVES, 0, 9) == consistency_proof(LEAVES, 9, 9) == []
    verify_consistency(0, 9, EMPTY_ROOT, reference_mth(0, 9), [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(9, 9, reference_mth(0, 9), reference_mth(0, 9), [])
    with pytest.raises(ConsistencyProofError) as caught:
        verify_consistency(0, 9, reference_mth(0, 1), reference_mth(0, 9), [])
    assert (caught.value.tree_size, caught.value.calculated) == (0, EMPTY_ROOT)
    with pytest.raises(ConsistencyProofError) as caught:
        verify_consistency(9, 9, reference_mth(0, 9), reference_mth(0, 8), [])
    assert (caught.value.expected, caught.value.calculated) == (reference_mth(0, 8), reference_mth(0, 9))
    with pytest.raises(ConsistencyProofError, match="must be empty"):
        verify_consistency(0, 9, EMPTY_ROOT, reference_mth(0, 9), [LEAVES[0]])


ROOT, LEAF = reference_mth(0, 7), LEAVES[3]
PROOF = inclusion_proof(LEAVES, 3, 7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((7, 7, LEAF, PROOF, ROOT), "not in a tree of size 7"),
        ((-1, 7, LEAF, PROOF, ROOT), "not a non-negative int"),
        ((True, 7, LEAF, PROOF, ROOT), "not a non-negative int"),
        ((3, 7.0, LEAF, PROOF, ROOT), "not a non-negative int"),
        ((0, 0, LEAF, [], EMPTY_ROOT), "not in a tree of size 0"),
        ((3, 7, LEAF[:31], PROOF, ROOT), "leaf hash is not a 32-byte hash"),
        ((3, 7, LEAF.hex(), PROOF, ROOT), "leaf hash is not a 32-byte hash"),
        ((3, 7, LEAF, PROOF, ROOT + b"\x00"), "root is not a 32-byte hash"),
        ((3, 7, LEAF, [*PROOF[:2], PROOF[2][:16]], ROOT), r"proof\[2\] is not a 32-byte hash"),
        ((3, 7, LEAF, b"".join(PROOF), ROOT), "sequence of hashes"),
        ((3, 7, LEAF, PROOF[:2], ROOT), "wrong length"),
        ((3, 7, LEAF, [*PROOF, ROOT], ROOT), "wrong length"),
    ],
)
def test_malformed_inclusion_input_is_an_inclusion_error(args: tuple, message: str) -> None:
    with pytest.raises(InclusionProofError, match=message) as caught:
        verify_inclusion(*args)
    assert caught.value.expected is caught.value.calculated is caught.value.tree_size is None


OLD, NEW = reference_mth(0, 5), reference_mth(0, 13)
CONSISTENCY = consistency_proof(LEAVES, 5, 13)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((13, 5, NEW, OLD, CONSISTENCY), "larger than new size"),
        ((-1, 13, OLD, NEW, CONSISTENCY), "not a non-negative int"),
        ((5, None, OLD, NEW, CONSISTENCY), "not a non-negative int"),
        ((5, 13, OLD[:31], NEW, CONSISTENCY), "old root is not a 32-byte hash"),
        ((5, 13, OLD, bytearray(NEW), CONSISTENCY), "new root is not a 32-byte hash"),
        ((5, 13, OLD, NEW, [*CONSISTENCY[:-1], "00" * 32]), "is not a 32-byte hash"),
        ((5, 13, OLD, NEW, []), "empty proof"),
        ((5, 13, OLD, NEW, CONSISTENCY[:-1]), "wrong length"),
        ((5, 13, OLD, NEW, [*CONSISTENCY, NEW]), "wrong length"),
        ((5, 5, OLD, OLD, CONSISTENCY), "must be empty"),
    ],
)
def test_malformed_consistency_input_is_a_consistency_error(args: tuple, message: str) -> None:
    with pytest.raises(ConsistencyProofError, match=message) as caught:
        verify_consistency(*args)
    assert caught.value.expected is caught.value.calculated is caught.value.tree_size is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: inclusion_proof(LEAVES[:5], 0, 6), r"size 6 is not in 0\.\.5"),
        (lambda: inclusion_proof(LEAVES, 5, 5), "leaf index 5 is not in a tree of size 5"),
        (lambda: inclusion_proof(LEAVES, -1, 5), "leaf index -1"),
        (lambda: inclusion_proof(LEAVES, 0, 0), "not in a tree of size 0"),
        (lambda: consistency_proof(LEAVES, 6, 5), r"old size 6 is not in 0\.\.5"),
        (lambda: consistency_proof(LEAVES[:5], 1, 6), r"new size 6 is not in 0\.\.5"),
        (lambda: consistency_proof(LEAVES, 1, True), "new size True"),
        (lambda: inclusion_proof([*LEAVES[:3], b"short"], 0, 4), "leaf hash 3 is not a 32-byte hash"),
        (lambda: root_hash([*LEAVES[:3], LEAVES[3].hex()]), "leaf hash 3 is not a 32-byte hash"),
    ],
)
def test_impossible_trees_and_proofs_are_merkle_tree_errors(build, message: str) -> None:
    with pytest.raises(MerkleTreeError, match=message):
        build()


def test_proofs_over_a_prefix_ignore_later_leaves() -> None:
    assert inclusion_proof(LEAVES, 2, 5) == inclusion_proof(LEAVES[:5], 2, 5)
    assert consistency_proof(LEAVES, 2, 5) == consistency_proof(LEAVES[:5], 2, 5)
    assert inclusion_proof(tuple(LEAVES), 2, 5) == reference_path(2, 0, 5)


def test_a_proof_can_be_any_iterable_sequence() -> None:
    verify_inclusion(3, 7, LEAF, tuple(PROOF), ROOT)
    verify_consistency(5, 13, OLD, NEW, tuple(CONSISTENCY))
