"""The stored-subtree tree (`audit.tree`) against the whole-tree code of `audit.proof`.

`audit.proof` builds proofs by hashing every leaf (checked against Go's tlog vectors in test_merkle.py);
`audit.tree` builds them from O(log n) stored hashes. Both must give the same bytes, for trees grown
in any number of integration steps.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import MerkleTreeError, consistency_proof, hash_children, hash_leaf, inclusion_proof, root_hash
from audit.tree import (
    consistency_keys,
    consistency_proof_from,
    frontier_keys,
    inclusion_keys,
    inclusion_proof_from,
    integrate,
    root_from,
)


def leaves(n: int) -> list[bytes]:
    return [hash_leaf(f"entry {i}".encode()) for i in range(n)]


def grow(leaf_hashes: list[bytes], steps: list[int]) -> dict[tuple[int, int], bytes]:
    """Integrate `leaf_hashes` in batches of the sizes in `steps` (the rest in one last batch)."""
    stored: dict[tuple[int, int], bytes] = {}
    size = 0
    cuts = [*steps, len(leaf_hashes)]
    for cut in cuts:
        end = min(len(leaf_hashes), size + cut)
        frontier = [stored[key] for key in frontier_keys(size)]
        result = integrate(size, frontier, leaf_hashes[size:end])
        for level, index, digest in result.hashes:
            assert (level, index) not in stored, "a stored hash is written once"
            stored[(level, index)] = digest
        assert result.size == end
        assert result.root == root_hash(leaf_hashes[:end])
        size = end
    return stored


def only(stored: dict, keys: set) -> dict:
    """The stored hashes a proof asked for, and nothing else: proofs must name all they read."""
    return {key: stored[key] for key in keys}


def test_every_complete_subtree_is_stored_once_and_nothing_else() -> None:
    n = 77
    stored = grow(leaves(n), [1, 2, 5, 30])
    expected = {(level, i) for level in range(8) for i in range(n >> level)}
    assert set(stored) == expected
    for (level, index), digest in stored.items():
        lo = index << level
        assert digest == root_hash(leaves(n)[lo : lo + (1 << level)])
    assert len(stored) < 2 * n


@given(st.integers(1, 300), st.lists(st.integers(1, 64), max_size=6), st.data())
def test_proofs_from_stored_hashes_equal_whole_tree_proofs(n: int, steps: list[int], data) -> None:
    leaf_hashes = leaves(n)
    stored = grow(leaf_hashes, steps)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old size")
    assert root_from(size, only(stored, set(frontier_keys(size)))) == root_hash(leaf_hashes[:size])
    proof = inclusion_proof_from(index, size, only(stored, inclusion_keys(index, size)))
    assert proof == inclusion_proof(leaf_hashes, index, size)
    proof = consistency_proof_from(old, size, only(stored, consistency_keys(old, size)))
    assert proof == consistency_proof(leaf_hashes, old, size)


def test_a_proof_on_a_million_leaves_reads_logarithmically_many_hashes() -> None:
    size = 1_000_000
    assert len(inclusion_keys(123_456, size)) <= 2 * size.bit_length()
    assert len(consistency_keys(654_321, size)) <= 2 * size.bit_length()
    assert len(frontier_keys(size)) == size.bit_count()


def test_frontier_is_one_complete_subtree_per_set_bit_largest_first() -> None:
    assert frontier_keys(0) == []
    assert frontier_keys(1) == [(0, 0)]
    assert frontier_keys(6) == [(2, 0), (1, 2)]
    assert frontier_keys(13) == [(3, 0), (2, 2), (0, 12)]


def test_root_of_nothing_is_the_empty_root() -> None:
    assert root_from(0, {}) == hashlib.sha256(b"").digest()
    assert integrate(0, [], []).root == hashlib.sha256(b"").digest()


def test_a_stored_hash_that_is_wrong_changes_the_proof() -> None:
    leaf_hashes = leaves(10)
    stored = grow(leaf_hashes, [])
    stored[(1, 1)] = hash_children(b"\x00" * 32, b"\x01" * 32)
    assert inclusion_proof_from(0, 10, stored) != inclusion_proof(leaf_hashes, 0, 10)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: integrate(3, [b"\x00" * 32], []), "has 2 frontier hashes"),
        (lambda: integrate(1, [b"short"], []), "frontier hash is not a 32-byte hash"),
        (lambda: integrate(0, [], [b"x"]), "leaf hash 0 is not a 32-byte hash"),
        (lambda: integrate(-1, [], []), "tree size -1"),
        (lambda: inclusion_keys(5, 5), "leaf index 5 is not in a tree of size 5"),
        (lambda: inclusion_proof_from(0, 0, {}), "leaf index 0 is not in a tree of size 0"),
        (lambda: consistency_keys(6, 5), "old size 6 is not in 0..5"),
        (lambda: inclusion_proof_from(0, 4, {}), "stored hash (1, 1) is missing"),
        (lambda: root_from(4, {}), "stored hash (2, 0) is missing"),
    ],
)
def test_impossible_trees_are_merkle_tree_errors(call, message: str) -> None:
    with pytest.raises(MerkleTreeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
