"""A Merkle tree kept as the hashes of its complete subtrees, for O(log n) proofs.

A complete subtree is addressed by `(level, index)`: the MTH of leaves [index * 2**level,
(index + 1) * 2**level). Level 0 holds the leaf hashes. A log of n leaves has fewer than 2n of them,
and every node of RFC 6962's tree over any prefix of the log folds from O(log n) of them: its left
parts are complete subtrees, only its right edge is ragged (the same stored hashes as
golang.org/x/mod/sumdb/tlog, addressed by level and index instead of one counter).

Appending never changes a stored hash: integrating leaves n..m-1 needs only the hashes of the complete
subtrees that [0, n) splits into (its frontier, one per set bit of n) and yields the new ones.

Reading is two steps so that the caller can fetch from wherever it stores hashes (a database, a
file): `*_keys` name the stored hashes a proof needs, `*_proof` builds it from a mapping holding them.
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from audit.errors import MerkleTreeError
from audit.proof import _consistency_path, _inclusion_path, _largest_power_of_two_below
from audit.rfc6962 import EMPTY_ROOT, HASH_SIZE, hash_children

__all__ = [
    "Integrated",
    "Key",
    "consistency_keys",
    "consistency_proof_from",
    "frontier_keys",
    "inclusion_keys",
    "inclusion_proof_from",
    "integrate",
    "root_from",
    "within",
]

Key = tuple[int, int]  # (level, index) of a complete subtree


@dataclass(frozen=True, slots=True)
class Integrated:
    """What appending leaves produced: the new stored hashes, in order, and the new root."""

    size: int
    hashes: list[tuple[int, int, bytes]]  # (level, index, hash)
    root: bytes
    frontier: list[bytes]  # the new size's frontier hashes, in `frontier_keys` order


def frontier_keys(size: int) -> list[Key]:
    """The complete subtrees that [0, size) splits into, largest (leftmost) first."""
    _require_count(size, "tree size")
    return _covering(0, size)


def integrate(size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes]) -> Integrated:
    """Append `leaf_hashes` to a tree of `size` leaves whose frontier hashes (in `frontier_keys`
    order) are `frontier`. Returns every complete subtree the new leaves complete and the new root.

    Raises `MerkleTreeError` if the frontier does not have one hash per set bit of `size` or a hash
    is not 32 bytes.
    """
    _require_count(size, "tree size")
    if len(frontier) != size.bit_count():
        raise MerkleTreeError(
            f"a tree of size {size} has {size.bit_count()} frontier hashes, not {len(frontier)}"
        )
    stack = [_checked(h, "frontier hash") for h in frontier]
    stored: list[tuple[int, int, bytes]] = []
    for offset, leaf in enumerate(leaf_hashes):
        index = size + offset
        node = _checked(leaf, f"leaf hash {index}")
        stored.append((0, index, node))
        level, merged = 0, index + 1
        while merged & 1 == 0:  # each trailing zero of index+1 completes a subtree
            node = hash_children(stack.pop(), node)
            level += 1
            merged >>= 1
            stored.append((level, index >> level, node))
        stack.append(node)
    return Integrated(size + len(leaf_hashes), stored, _fold(stack), stack)


def root_from(size: int, hashes: Mapping[Key, bytes]) -> bytes:
    """MTH of the first `size` leaves from the frontier hashes of `size` (`EMPTY_ROOT` for 0)."""
    return _reader(hashes)(0, size) if size else EMPTY_ROOT


def within(key: Key, size: int) -> bool:
    """Whether the complete subtree `key` lies within the first `size` leaves."""
    level, index = key
    return (index + 1) << level <= size


def inclusion_keys(index: int, size: int) -> set[Key]:
    """The stored hashes `inclusion_proof_from(index, size, …)` reads."""
    _require_index(index, size)
    keys: set[Key] = set()
    _inclusion_path(index, size, _recorder(keys))
    return keys


def inclusion_proof_from(index: int, size: int, hashes: Mapping[Key, bytes]) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1) from stored hashes holding `inclusion_keys`."""
    _require_index(index, size)
    return _inclusion_path(index, size, _reader(hashes))


def consistency_keys(old_size: int, new_size: int) -> set[Key]:
    """The stored hashes `consistency_proof_from(old_size, new_size, …)` reads."""
    _require_sizes(old_size, new_size)
    keys: set[Key] = set()
    if old_size not in (0, new_size):
        _consistency_path(old_size, new_size, _recorder(keys))
    return keys


def consistency_proof_from(old_size: int, new_size: int, hashes: Mapping[Key, bytes]) -> list[bytes]:
    """PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1) from stored hashes holding `consistency_keys`;
    empty when the sizes are equal or `old_size` is 0, as in `audit.proof.consistency_proof`."""
    _require_sizes(old_size, new_size)
    if old_size in (0, new_size):
        return []
    return _consistency_path(old_size, new_size, _reader(hashes))


# ---- helpers


def _covering(lo: int, hi: int) -> list[Key]:
    """The complete subtrees a node [lo, hi) of RFC 6962's tree folds from, left to right."""
    keys = []
    while hi > lo:
        width = hi - lo
        if width & (width - 1) == 0:  # a complete subtree (nodes of the tree are aligned)
            level = width.bit_length() - 1
            keys.append((level, lo >> level))
            break
        k = _largest_power_of_two_below(width)
        level = k.bit_length() - 1
        keys.append((level, lo >> level))
        lo += k
    return keys


def _fold(parts: Sequence[bytes]) -> bytes:
    """MTH(D[lo:hi]) from its complete subtrees, left to right: the ragged edge folds from the right."""
    if not parts:
        return EMPTY_ROOT
    node = parts[-1]
    for left in reversed(parts[:-1]):
        node = hash_children(left, node)
    return node


def _recorder(keys: set[Key]):
    def subtree_hash(lo: int, hi: int) -> bytes:
        keys.update(_covering(lo, hi))
        return b""

    return subtree_hash


def _reader(hashes: Mapping[Key, bytes]):
    def subtree_hash(lo: int, hi: int) -> bytes:
        try:
            return _fold([hashes[key] for key in _covering(lo, hi)])
        except KeyError as missing:
            raise MerkleTreeError(f"stored hash {missing.args[0]} is missing") from None

    return subtree_hash


def _checked(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise MerkleTreeError(f"{what} is not a {HASH_SIZE}-byte hash")
    return value


def _require_count(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MerkleTreeError(f"{what} {value!r} is not a non-negative int")


def _require_index(index: int, size: int) -> None:
    _require_count(size, "tree size")
    _require_count(index, "leaf index")
    if index >= size:
        raise MerkleTreeError(f"leaf index {index} is not in a tree of size {size}")


def _require_sizes(old_size: int, new_size: int) -> None:
    _require_count(new_size, "new size")
    _require_count(old_size, "old size")
    if old_size > new_size:
        raise MerkleTreeError(f"old size {old_size} is not in 0..{new_size} (the new size)")
