"""`place_ranks` (the split allocation for one job) and `pack_ranks` (its greedy form): a job's ranks over a cluster's
free slots, on as few nodes as possible, never over a node's capacity."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmos_chain.errors import AllocationError
from llmos_chain.market.placement import nodes_used, pack_ranks, place_ranks


def test_a_job_that_fits_one_node_stays_on_it() -> None:
    assert place_ranks({"a": 2, "b": 4, "c": 1}, 3) == ["b", "b", "b"]


def test_a_job_larger_than_any_node_spans_the_fewest_nodes() -> None:
    placement = place_ranks({"a": 1, "b": 1}, 2)
    assert sorted(placement) == ["a", "b"] and nodes_used(placement) == 2
    big = Counter(place_ranks({"a": 3, "b": 8, "c": 8, "d": 2}, 12))
    assert set(big) == {"b", "c"} and sorted(big.values()) == [4, 8]  # the two 8-slot nodes, not three smaller ones
    assert pack_ranks({"a": 3, "b": 8, "c": 8, "d": 2}, 12) == ["b"] * 8 + ["c"] * 4  # greedy: ties by node id


def test_more_ranks_than_free_slots_is_refused_by_name() -> None:
    with pytest.raises(AllocationError, match="needs 3 slots; the cluster has 2 free"):
        place_ranks({"a": 1, "b": 1.0, "c": 0}, 3)
    with pytest.raises(AllocationError, match="at least one rank"):
        place_ranks({"a": 1}, 0)


def test_the_split_and_the_greedy_agree_on_how_many_nodes() -> None:
    for free, ranks in [({"a": 1, "b": 1}, 2), ({"a": 3, "b": 8, "c": 8, "d": 2}, 12), ({"a": 2, "b": 2, "c": 2}, 5),
                        ({"x": 8}, 8), ({"a": 1, "b": 7}, 6)]:
        split, greedy = place_ranks(free, ranks), pack_ranks(free, ranks)
        assert len(split) == ranks and nodes_used(split) == nodes_used(greedy), (free, ranks, split)
        assert all(count <= free[node] for node, count in Counter(split).items())


@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), st.integers(0, 8), max_size=6), st.integers(1, 20))
def test_placement_respects_capacity_and_packs(free: dict[str, int], ranks: int) -> None:
    if sum(free.values()) < ranks:
        with pytest.raises(AllocationError):
            pack_ranks(free, ranks)
        return
    placement = pack_ranks(free, ranks)
    assert len(placement) == ranks
    assert all(count <= free[node] for node, count in Counter(placement).items())
    # no placement uses fewer nodes: the k fullest nodes cannot hold the job for k below ours
    fullest = sorted(free.values(), reverse=True)
    assert sum(fullest[: nodes_used(placement) - 1]) < ranks


def test_place_ranks_is_the_split_allocation_not_its_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmos_chain.market import placement

    def no_fallback(*_: object) -> list[str]:
        raise AssertionError("the split allocation found nothing; the greedy fallback ran")

    monkeypatch.setattr(placement, "pack_ranks", no_fallback)
    assert sorted(place_ranks({"a": 1, "b": 1}, 2)) == ["a", "b"]
    assert place_ranks({"a": 4, "b": 4}, 3) in (["a"] * 3, ["b"] * 3)
