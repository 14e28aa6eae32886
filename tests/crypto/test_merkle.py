"""Merkle roots and inclusion proofs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmos_chain.crypto import merkle


def test_known_shapes() -> None:
    a, b, c = (merkle.leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert merkle.root([a]) == a
    assert merkle.root([a, b]) == merkle.node_hash(a, b)
    assert merkle.root([a, b, c]) == merkle.node_hash(merkle.node_hash(a, b), c)  # split at the largest power of two
    # domain separation: a leaf over the bytes of two children never equals their node
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)
    assert merkle.leaf_hash(b"\x01" + a + b) != merkle.node_hash(a, b)


def test_known_answers() -> None:
    """RFC 6962's shape over BLAKE3, computed here from BLAKE3 alone (and pinned), so the format cannot drift."""
    import blake3

    def leaf(x: bytes) -> bytes:
        return blake3.blake3(b"\x00" + x).digest()

    def node(left: bytes, right: bytes) -> bytes:
        return blake3.blake3(b"\x01" + left + right).digest()

    la, lb, lc = leaf(b"a"), leaf(b"b"), leaf(b"c")
    assert merkle.leaf_hash(b"a") == la
    assert merkle.root([la, lb, lc]) == node(node(la, lb), lc)
    assert merkle.root([la, lb, lc]).hex() == "6c62dd52a0971b7d00a7cead004e0c3f3c0766e3f5359a0f8297768d2b02d03c"
    assert merkle.root([]) == blake3.blake3(b"").digest()
    assert merkle.root([]) != merkle.root([merkle.leaf_hash(b"")])


def test_leaf_and_node_domains_differ() -> None:
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)


@settings(max_examples=50, deadline=None)
@given(items=st.lists(st.binary(max_size=8), min_size=1, max_size=40), data=st.data())
def test_proofs_verify_and_bind_position(items: list[bytes], data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(x) for x in items]
    root = merkle.root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    path = merkle.proof(leaves, i)
    assert merkle.verify_proof(leaves[i], i, len(leaves), path, root)
    assert not merkle.verify_proof(merkle.leaf_hash(b"other"), i, len(leaves), path, root)
    if len(leaves) > 1:
        j = (i + 1) % len(leaves)
        assert not merkle.verify_proof(leaves[i], j, len(leaves), path, root) or leaves[i] == leaves[j]
