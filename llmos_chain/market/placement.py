"""Where the ranks of one multi-node job run: a job's demand of D slots (GPUs, or CPU slots on CPU hosts) spread over
a cluster's nodes at the moment it starts, one node per rank.

`place_ranks` asks the split allocation (`split.allocate_split`, the allocator's `a_jn` with its per-extra-node
penalty) for this one job: every node at the same price, so the penalty alone decides, and the job stays on one node
when one node can hold it and spans as few nodes as it must otherwise (each extra node costs gradient traffic
between nodes). That is the seed's `Σ_n a_n = D, 0 ≤ a_n ≤ R_n` for one job. `pack_ranks` is the same rule greedily
(fullest node first), the fallback should the solver find nothing while the slots suffice.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmos_chain.errors import AllocationError


def place_ranks(free: Mapping[str, float], ranks: int, time_limit_s: float = 1.0) -> list[str]:
    """The node of each rank (rank 0 first, on the node with the most ranks) for a job of `ranks` slots, given each
    node's free slots. Raises AllocationError when the free slots cannot hold the job."""
    slots = _slots(free, ranks)
    from llmos_chain.market.allocator import JobDemand, WorkerSupply
    from llmos_chain.market.split import allocate_split

    # One job that pays far more than it costs, no deadline or memory in the way: only capacity and the penalty per
    # extra node decide (equal prices on every node).
    job = JobDemand(job_id=0, gpus=ranks, mem_gib=0, payment=1e9, deadline_s=1e9, work=1.0)
    nodes = [WorkerSupply(node, count, mem_gib=1, price_per_gpu_hour=1.0) for node, count in sorted(slots.items())]
    try:
        on = allocate_split([job], nodes, time_limit_s=time_limit_s).placements.get(0) or {}
    except AllocationError:
        on = {}
    if sum(on.values()) != ranks:
        return pack_ranks(slots, ranks)
    return [node for node, count in sorted(on.items(), key=lambda kv: (-kv[1], kv[0])) for _ in range(count)]


def pack_ranks(free: Mapping[str, float], ranks: int) -> list[str]:
    """The same rule, greedily: nodes by free slots, most first (ties by node id, so the answer does not depend on
    the mapping's order)."""
    slots = _slots(free, ranks)
    placement: list[str] = []
    for node, count in sorted(slots.items(), key=lambda kv: (-kv[1], kv[0])):
        placement += [node] * min(count, ranks - len(placement))
        if len(placement) == ranks:
            break
    return placement


def _slots(free: Mapping[str, float], ranks: int) -> dict[str, int]:
    if ranks < 1:
        raise AllocationError(f"a job needs at least one rank, not {ranks}")
    slots = {node: int(count) for node, count in free.items() if int(count) > 0}
    if sum(slots.values()) < ranks:
        raise AllocationError(f"the job needs {ranks} slots; the cluster has {sum(slots.values())} free "
                              f"({', '.join(f'{n[:8]}: {c}' for n, c in sorted(slots.items())) or 'none'})")
    return slots


def nodes_used(placement: list[str]) -> int:
    return len(set(placement))
