"""Where the ranks of one multi-node job run: a job's demand of D slots (GPUs, or CPU slots on CPU hosts) spread over
a cluster's nodes, packed first.

This is the seed's `Σ_n a_n = D, 0 ≤ a_n ≤ R_n` for one job, solved greedily: fill the node with the most free
slots, then the next, so a job stays on one node when one node can hold it and spans as few nodes as possible
otherwise (each extra node costs gradient traffic between nodes). The Ray executor calls it with Ray's per-node free
resources at the moment a job starts. The allocator's MILP split (`a_jn`, issue 13's allocator half) can replace it
behind the same signature: free slots per node in, one node per rank out.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmos_chain.errors import AllocationError


def place_ranks(free: Mapping[str, float], ranks: int) -> list[str]:
    """The node of each rank (rank 0 first) for a job of `ranks` slots, given each node's free slots.

    Packed first: nodes by free slots, most first (ties by node id, so the answer does not depend on the mapping's
    order); rank 0 lands on the fullest node. Raises AllocationError when the free slots cannot hold the job."""
    if ranks < 1:
        raise AllocationError(f"a job needs at least one rank, not {ranks}")
    slots = {node: int(count) for node, count in free.items() if int(count) > 0}
    if sum(slots.values()) < ranks:
        raise AllocationError(f"the job needs {ranks} slots; the cluster has {sum(slots.values())} free "
                              f"({', '.join(f'{n[:8]}: {c}' for n, c in sorted(slots.items())) or 'none'})")
    placement: list[str] = []
    for node, count in sorted(slots.items(), key=lambda kv: (-kv[1], kv[0])):
        take = min(count, ranks - len(placement))
        placement += [node] * take
        if len(placement) == ranks:
            break
    return placement


def nodes_used(placement: list[str]) -> int:
    return len(set(placement))
