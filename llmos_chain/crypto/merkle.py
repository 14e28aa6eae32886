"""Merkle trees over BLAKE3 with RFC 6962's shape and domain separation.

leaf(x) = BLAKE3(0x00 ‖ x); node(l, r) = BLAKE3(0x01 ‖ l ‖ r); a list of n > 1 leaves splits at the
largest power of two below n. Used for dataset content roots (leaves: plaintext chunks) and training
trajectory roots (leaves: encoded records). Inclusion proofs let a verifier check one chunk or record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import blake3

from llmos_chain.errors import LlmosError

LEAF = b"\x00"
NODE = b"\x01"


def leaf_hash(data: bytes | bytearray | memoryview) -> bytes:
    h = blake3.blake3(LEAF)
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(NODE + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves. The root of no leaves is BLAKE3 of the empty string."""
    if not leaves:
        return blake3.blake3(b"").digest()
    level = list(leaves)
    return _root(level, 0, len(level))


def _root(leaves: list[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_root(leaves, lo, lo + k), _root(leaves, lo + k, hi))


def root_of(items: Iterable[bytes]) -> bytes:
    return root([leaf_hash(x) for x in items])


def proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf `index` (sibling hashes from the leaf up)."""
    if not 0 <= index < len(leaves):
        raise LlmosError(f"leaf index {index} out of range for {len(leaves)} leaves")
    path: list[bytes] = []
    _proof(list(leaves), 0, len(leaves), index, path)
    return path


def _proof(leaves: list[bytes], lo: int, hi: int, index: int, path: list[bytes]) -> None:
    n = hi - lo
    if n == 1:
        return
    k = _split(n)
    if index < lo + k:
        _proof(leaves, lo, lo + k, index, path)
        path.append(_root(leaves, lo + k, hi))
    else:
        _proof(leaves, lo + k, hi, index, path)
        path.append(_root(leaves, lo, lo + k))


def verify_proof(leaf: bytes, index: int, size: int, path: Sequence[bytes], expected_root: bytes) -> bool:
    """True when `leaf` (already hashed) sits at `index` of a `size`-leaf tree with `expected_root`."""
    if not 0 <= index < size:
        return False
    sides: list[bool] = []  # True: the sibling is on the right
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            sides.append(True)
            hi = lo + k
        else:
            sides.append(False)
            lo = lo + k
    if len(sides) != len(path):
        return False
    acc = leaf
    for sibling, right in zip(path, reversed(sides), strict=True):
        acc = node_hash(acc, sibling) if right else node_hash(sibling, acc)
    return acc == expected_root
