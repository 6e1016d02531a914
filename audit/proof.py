"""RFC 9162 §2.1.3 inclusion proofs and §2.1.4 consistency proofs: building and verifying them.

Proofs are lists of 32-byte hashes in RFC 9162 order: the hash nearest the leaf (or the old tree)
first, the sibling of the root's child last. RFC 6962 §2.1.1/§2.1.2 produce the same lists, and so do
golang.org/x/mod/sumdb/tlog's ProveRecord/ProveTree (the test vectors come from there).

Building a proof here hashes the whole tree once, O(n); a store of complete-subtree hashes can later
answer the same `_SubtreeHash` questions in O(log n). Verification is RFC 9162 §2.1.3.2 and §2.1.4.2
step by step; the `# (n)` comments are the RFC's step numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from audit.errors import ConsistencyProofError, InclusionProofError, MerkleTreeError, ProofError
from audit.rfc6962 import EMPTY_ROOT, HASH_SIZE, hash_children

__all__ = [
    "consistency_proof",
    "inclusion_proof",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

# MTH(D[lo:hi]) for a node [lo, hi) of the tree being proved: a complete subtree, or one on its right edge.
_SubtreeHash = Callable[[int, int], bytes]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """Return PATH(index, D[size]) (RFC 9162 §2.1.3.1): the proof that leaf `index` is in the tree
    made of the first `size` of `leaf_hashes`.

    Raises `MerkleTreeError` if `size` exceeds the leaves given, `index` is not in 0..size-1, or a
    leaf hash is not 32 bytes.
    """
    _require_size(leaf_hashes, size, "size")
    if not _is_count(index) or index >= size:
        raise MerkleTreeError(f"leaf index {index!r} is not in a tree of size {size}")
    return _inclusion_path(index, size, _subtree_hasher(leaf_hashes[:size]))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1): the proof that the tree of the first
    `new_size` of `leaf_hashes` extends the tree of the first `old_size`.

    The proof is empty when the sizes are equal (SUBPROOF(m, D[m], true) = {}) and when `old_size` is 0:
    the RFC defines proofs only for 0 < old_size, and the empty tree is a prefix of every tree.

    Raises `MerkleTreeError` if `new_size` exceeds the leaves given, `old_size` is not in
    0..new_size, or a leaf hash is not 32 bytes.
    """
    _require_size(leaf_hashes, new_size, "new size")
    if not _is_count(old_size) or old_size > new_size:
        raise MerkleTreeError(f"old size {old_size!r} is not in 0..{new_size} (the new size)")
    if old_size in (0, new_size):
        return []
    return _consistency_path(old_size, new_size, _subtree_hasher(leaf_hashes[:new_size]))


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """Return the root that `proof` leads to from `leaf_hash` at `index` in a tree of `size` leaves
    (RFC 9162 §2.1.3.2 steps 1-4, and the check of step 5 that the proof was the right length).

    The caller must still compare the result with a root it trusts; `verify_inclusion` does.

    Raises `InclusionProofError` if `index` is not in 0..size-1, a hash is not 32 bytes, or the proof
    has the wrong number of hashes for `index` and `size`.
    """
    _require_count(index, "leaf index", InclusionProofError)
    _require_count(size, "tree size", InclusionProofError)
    _require_hash(leaf_hash, "leaf hash", InclusionProofError)
    proof = _require_proof(proof, InclusionProofError)
    # (1) If leaf_index is greater than or equal to tree_size, fail the proof verification.
    if index >= size:
        raise InclusionProofError(f"leaf index {index} is not in a tree of size {size}")
    # (2) Set fn to leaf_index and sn to tree_size - 1. (3) Set r to hash.
    fn, sn, r = index, size - 1, leaf_hash
    # (4) For each value p in the inclusion_path array:
    for p in proof:
        # (4a) If sn is 0, stop the iteration and fail the proof verification.
        if sn == 0:
            raise InclusionProofError(_length_message(proof, f"leaf {index} of a tree of size {size}"))
        # (4b) If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            r = hash_children(p, r)  # (4b.1) Set r to HASH(0x01 || p || r).
            # (4b.2) If LSB(fn) is not set, right-shift fn and sn equally until LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hash_children(r, p)  # Otherwise set r to HASH(0x01 || r || p).
        # (4c) Finally, right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # (5) Compare sn to 0 (the root comparison is the caller's).
    if sn != 0:
        raise InclusionProofError(_length_message(proof, f"leaf {index} of a tree of size {size}"))
    return r


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Verify that `proof` proves `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`
    (RFC 9162 §2.1.3.2).

    Raises `InclusionProofError` if it does not, carrying the expected and calculated roots when the
    proof was well formed, or for malformed input: `index` not in 0..size-1, a hash that is not 32 bytes,
    a proof of the wrong length.
    """
    _require_hash(root, "root", InclusionProofError)
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    # (5) Compare r against the root_hash.
    if calculated != root:
        raise InclusionProofError(
            f"leaf {index} is not proved by this proof", tree_size=size, expected=root, calculated=calculated
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify that `proof` proves the tree of `new_size` leaves with `new_root` extends the tree of
    `old_size` leaves with `old_root` (RFC 9162 §2.1.4.2).

    RFC 9162 covers 0 < old_size < new_size. Outside it: equal sizes need an empty proof and equal
    roots; old size 0 needs an empty proof and `old_root` equal to `EMPTY_ROOT` (RFC 6962 §2.1).

    Raises `ConsistencyProofError` if it does not, carrying the tree size, expected root and calculated
    root of the first root that differs, or for malformed input: sizes negative or out of order, a hash
    that is not 32 bytes, a proof of the wrong length.
    """
    _require_count(old_size, "old size", ConsistencyProofError)
    _require_count(new_size, "new size", ConsistencyProofError)
    _require_hash(old_root, "old root", ConsistencyProofError)
    _require_hash(new_root, "new root", ConsistencyProofError)
    proof = _require_proof(proof, ConsistencyProofError)
    if old_size > new_size:
        raise ConsistencyProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size in (0, new_size):
        if proof:
            raise ConsistencyProofError(f"proof from size {old_size} to {new_size} must be empty")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ConsistencyProofError(
                "old root is not the empty tree's", tree_size=0, expected=old_root, calculated=EMPTY_ROOT
            )
        if old_size == new_size and new_root != old_root:
            raise ConsistencyProofError(
                "roots of equal sizes differ", tree_size=new_size, expected=new_root, calculated=old_root
            )
        return
    first, second = old_size, new_size
    # (1) If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        raise ConsistencyProofError(f"empty proof from size {first} to {second}")
    # (2) If first is an exact power of 2, then prepend first_hash to the consistency_path array.
    path = [old_root, *proof] if first & (first - 1) == 0 else proof
    # (3) Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # (4) If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # (5) Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # (6) For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # (6a) If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ConsistencyProofError(_length_message(proof, f"sizes {first} to {second}"))
        # (6b) If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)  # (6b.1) Set fr to HASH(0x01 || c || fr).
            sr = hash_children(c, sr)  # (6b.2) Set sr to HASH(0x01 || c || sr).
            # (6b.3) If LSB(fn) is not set, right-shift fn and sn equally until LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = hash_children(sr, c)  # Otherwise set sr to HASH(0x01 || sr || c).
        # (6c) Finally, right-shift both fn and sn one time.
        fn, sn = fn >> 1, sn >> 1
    # (7) Verify that sn is 0, fr equals first_hash and sr equals second_hash.
    if sn != 0:
        raise ConsistencyProofError(_length_message(proof, f"sizes {first} to {second}"))
    if fr != old_root:
        raise ConsistencyProofError(
            "old tree is not proved by this proof", tree_size=first, expected=old_root, calculated=fr
        )
    if sr != new_root:
        raise ConsistencyProofError(
            "new tree is not proved by this proof", tree_size=second, expected=new_root, calculated=sr
        )


# ---- building proofs over a subtree-hash oracle


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k, for n >= 2 (the split point of RFC 6962 §2.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_path(index: int, size: int, subtree_hash: _SubtreeHash) -> list[bytes]:
    # RFC 9162 §2.1.3.1: PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k,
    #                                    PATH(m - k, D[k:n]) : MTH(D[0:k]) otherwise; walked top-down.
    lo, hi, siblings = 0, size, []
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            siblings.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(subtree_hash(lo, lo + k))
            lo += k
    return siblings[::-1]


def _consistency_path(old_size: int, new_size: int, subtree_hash: _SubtreeHash) -> list[bytes]:
    # RFC 9162 §2.1.4.1, for 0 < m < n: PROOF(m, D_n) = SUBPROOF(m, D_n, true), where
    #   SUBPROOF(m, D_m, true) = {}, SUBPROOF(m, D_m, false) = {MTH(D_m)}, and for m < n
    #   SUBPROOF(m, D_n, b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])          if m <= k
    #                       = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  otherwise.
    # b stays true exactly while the walk has only gone left, i.e. while lo == 0.
    lo, hi, siblings = 0, new_size, []
    while old_size != hi:
        k = _largest_power_of_two_below(hi - lo)
        if old_size <= lo + k:
            siblings.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(subtree_hash(lo, lo + k))
            lo += k
    if lo != 0:
        siblings.append(subtree_hash(lo, hi))
    return siblings[::-1]


def _subtree_hasher(leaf_hashes: Sequence[bytes]) -> _SubtreeHash:
    """Hash every node of the tree once, O(n), and answer MTH(D[lo:hi]) for its nodes.

    Level j holds, for each i, MTH of leaves [i * 2**j, min((i + 1) * 2**j, n)): pair neighbours,
    carry an unpaired last node up unchanged. That is RFC 6962 §2.1's tree, whose left subtrees are
    complete and whose right edge is ragged.
    """
    for index, leaf in enumerate(leaf_hashes):
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise MerkleTreeError(f"leaf hash {index} is not a {HASH_SIZE}-byte hash")
    levels = [list(leaf_hashes)]
    while len(level := levels[-1]) > 1:
        paired = [hash_children(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        levels.append(paired + level[-1:] if len(level) % 2 else paired)

    def subtree_hash(lo: int, hi: int) -> bytes:
        height = (hi - lo - 1).bit_length()  # the smallest j with hi - lo <= 2**j
        return levels[height][lo >> height]

    return subtree_hash


# ---- input checks


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _require_size(leaf_hashes: Sequence[bytes], size: object, what: str) -> None:
    if not _is_count(size) or size > len(leaf_hashes):
        raise MerkleTreeError(f"{what} {size!r} is not in 0..{len(leaf_hashes)} (the leaves given)")


def _require_count(value: object, what: str, error: type[ProofError]) -> None:
    if not _is_count(value):
        raise error(f"{what} {value!r} is not a non-negative int")


def _require_hash(value: object, what: str, error: type[ProofError]) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise error(f"{what} is not a {HASH_SIZE}-byte hash: {type(value).__name__} {value!r:.80}")


def _require_proof(proof: Sequence[bytes], error: type[ProofError]) -> list[bytes]:
    if isinstance(proof, bytes | bytearray | str):
        raise error(f"proof must be a sequence of hashes, not {type(proof).__name__}")
    hashes = list(proof)
    for position, value in enumerate(hashes):
        _require_hash(value, f"proof[{position}]", error)
    return hashes


def _length_message(proof: Sequence[bytes], what: str) -> str:
    return f"a proof of {len(proof)} hashes is the wrong length for {what}"
