"""RFC 6962 §2.1 Merkle Tree Hash (MTH) with SHA-256, the hashing of RFC 9162 §2.1.1.

Each tenant's audit log is a Merkle tree whose leaves are the stored entry bytes, in order::

    MTH({})   = SHA-256()                                    the empty tree
    MTH({d0}) = SHA-256(0x00 || d0)                          one leaf
    MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  n > 1, k = largest power of 2 < n

The 0x00 / 0x01 prefixes separate leaves from interior nodes (RFC 6962 §2.1, and the second-preimage
note in RFC 9162 §2.1.1), so no interior node can be presented as a leaf.

Functions here take and return 32-byte digests as `bytes`. Proofs live in `audit.proof`.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.errors import MerkleTreeError
from crypto.canonical import sha256

__all__ = ["EMPTY_ROOT", "HASH_SIZE", "hash_children", "hash_leaf", "root_hash"]

HASH_SIZE = 32

# RFC 6962 §2.1: "The hash of an empty list is the hash of an empty string", MTH({}) = SHA-256().
# (golang.org/x/mod/sumdb/tlog defines it as 32 zero bytes instead; the vectors note the difference.)
EMPTY_ROOT = sha256(b"")

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def hash_leaf(entry: bytes) -> bytes:
    """Return the leaf hash of one entry, SHA-256(0x00 || entry) (RFC 6962 §2.1).

    The same value as `audit.entry.leaf_hash`; the tests hold the two together.
    """
    return sha256(_LEAF_PREFIX + entry)


def hash_children(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash SHA-256(0x01 || left || right) (RFC 6962 §2.1).

    Does not check its arguments: callers check hashes that come from outside first.
    """
    return sha256(_NODE_PREFIX + left + right)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH(D[n]), the root of the tree over `leaf_hashes` (leaf hashes, not entries).

    O(n) hashing, O(log n) memory. Returns `EMPTY_ROOT` for no leaves.

    Raises `MerkleTreeError` if a leaf hash is not 32 bytes.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    # After leaf i, `stack` holds the roots of the complete subtrees that D[0:i+1] splits into, one
    # per set bit of i+1, largest (leftmost) first: the same subtrees as RFC 6962 §2.1's recursion,
    # whose left part is always a complete tree of 2**j leaves.
    stack: list[bytes] = []
    for index, leaf in enumerate(leaf_hashes):
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise MerkleTreeError(f"leaf hash {index} is not a {HASH_SIZE}-byte hash")
        node = leaf
        merged = index + 1
        while merged & 1 == 0:  # each trailing zero of i+1 completes a subtree
            node = hash_children(stack.pop(), node)
            merged >>= 1
        stack.append(node)
    # RFC 6962 §2.1: MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])), so the ragged right edge
    # folds from the smallest subtree up.
    root = stack.pop()
    while stack:
        root = hash_children(stack.pop(), root)
    return root
