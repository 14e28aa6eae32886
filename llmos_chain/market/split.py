"""Split allocation: a job's GPUs (or CPU slots) spread over several nodes when that is needed or cheaper.

Variables: a[j, n] ∈ {0, 1, …} GPUs of job j on node n, x[j] ∈ {0, 1} the job placed, y[j, n] ∈ {0, 1} node n used
by job j. A pair (j, n) has variables only if it is compatible: the node's per-GPU memory holds the job's per-GPU
need, the job's runtime at the node's speed meets its deadline, and one GPU there costs no more than the job pays.

    minimise   Σ_j Σ_n c[j, n]·a[j, n]  +  Σ_j P[j]·(1 − x[j])  +  π·Σ_j (Σ_n y[j, n] − x[j])
    subject to Σ_n a[j, n] = D[j]·x[j]                    (all of the demand or none of it)
               Σ_j a[j, n] ≤ G[n]                          (the node's free GPUs)
               Σ_n c[j, n]·a[j, n] ≤ P[j]·x[j]             (price cap; implied at the optimum, kept for incumbents)
               a[j, n] ≤ min(D[j], G[n])·y[j, n]           (a node that gives GPUs counts as used)

with c[j, n] = price[n] × runtime[j, n] (per GPU), P[j] the job's payment and π the penalty per extra node
(communication). A job on one node costs exactly what `allocator.allocate` charges it (price × GPUs × hours) and no
penalty, so with every job on one node this is today's program; with one job, no payment term and π = 0 it is the
seed's min Σ_i R_i a_i s.t. Σ_i a_i = D, 0 ≤ a_i ≤ R_i.

Solving (`allocate_split`): today's `allocate` first (a packed incumbent and GPU prices from its LP); then the split
model over the jobs it can help — jobs left open that the compatible nodes could hold in pieces, and jobs a split
could make cheaper — as a MILP from the packed incumbent. Small instances get the whole model (all jobs, all pairs);
large ones a sub-MILP over those jobs on the GPUs the others leave. The bound is always proven: HiGHS's dual bound on
the whole model, or a Lagrangian bound over every pair (`split_lagrangian_bound`) improved by subgradient steps.

Runtime is taken per node (work / speed): a data-parallel job on nodes of different speeds runs at the slowest
one's pace, so mixed-speed splits are costed slightly low; every node used meets the deadline on its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmos_chain.errors import AllocationError
from llmos_chain.market.allocator import JobDemand, WorkerSupply, allocate, runtime_hours

#: The default penalty per extra node a job runs on, in the unit of payments (price × hours): a placement on one node
#: beats an equally priced split, and a split wins only where it saves more than this per extra node.
DEFAULT_NODE_PENALTY = 0.25
#: Up to this many compatible (job, node) pairs the whole split model is solved; above, a sub-MILP over the jobs a
#: split can help, on the GPUs the packed allocation leaves them.
WHOLE_MODEL_UP_TO = 20_000
_SUB_MILP_NODES = 16  # each engaged job's cheapest nodes with GPUs left, in the large path's sub-MILP


@dataclass
class SplitAllocation:
    """`placements[job_id][node] = GPUs`; a job absent from it is left open."""

    placements: dict[int, dict[str, int]]
    objective: float  # running costs + payments forgone + penalties for extra nodes
    bound: float  # a proven lower bound on the split program's optimum
    status: str  # "optimal" (within the gap), "feasible"
    solve_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        return 0.0 if self.objective == 0 else max(0.0, (self.objective - self.bound) / abs(self.objective))

    @property
    def split_jobs(self) -> list[int]:
        return sorted(j for j, on in self.placements.items() if len(on) > 1)

    @property
    def gpus_used(self) -> int:
        return sum(sum(on.values()) for on in self.placements.values())


def gpu_hour_cost(job: JobDemand, node: WorkerSupply, gpus: int = 1) -> float:
    """What `gpus` GPUs of `node` cost for the job's runtime there (the operations of `allocator.pair_cost`)."""
    return node.price_per_gpu_hour * gpus * runtime_hours(job, node)


def compatible(job: JobDemand, node: WorkerSupply) -> bool:
    """Whether the job may put GPUs on the node at all: memory per GPU, deadline, one GPU within the price cap."""
    return (
        node.free_gpus > 0
        and node.mem_gib >= job.mem_gib
        and runtime_hours(job, node) * 3600 <= job.deadline_s
        and gpu_hour_cost(job, node) <= job.payment
    )


def split_objective(jobs: Sequence[JobDemand], nodes: Sequence[WorkerSupply], placements: dict[int, dict[str, int]],
                    node_penalty: float = DEFAULT_NODE_PENALTY) -> float:
    by_name = {n.worker: n for n in nodes}
    total = 0.0
    for job in jobs:
        on = placements.get(job.job_id)
        if not on:
            total += job.payment
            continue
        total += sum(gpu_hour_cost(job, by_name[name], gpus) for name, gpus in on.items()) + node_penalty * (len(on) - 1)
    return total


def check_split(jobs: Sequence[JobDemand], nodes: Sequence[WorkerSupply], placements: dict[int, dict[str, int]]) -> None:
    """Raise AllocationError unless every placed job gets exactly its demand on compatible nodes within its price cap,
    and no node gives more than its free GPUs."""
    by_name = {n.worker: n for n in nodes}
    by_id = {j.job_id: j for j in jobs}
    used: dict[str, int] = {}
    for job_id, on in placements.items():
        job = by_id[job_id]
        if sum(on.values()) != job.gpus or any(g <= 0 for g in on.values()):
            raise AllocationError(f"job {job_id} gets {sorted(on.items())}, not its {job.gpus} GPUs")
        for name, gpus in on.items():
            if not compatible(job, by_name[name]):
                raise AllocationError(f"job {job_id} cannot run on node {name} (memory, deadline or price)")
            used[name] = used.get(name, 0) + gpus
        if sum(gpu_hour_cost(job, by_name[name], gpus) for name, gpus in on.items()) > job.payment:
            raise AllocationError(f"job {job_id} would cost more than it pays")
    for name, gpus in used.items():
        if gpus > by_name[name].free_gpus:
            raise AllocationError(f"node {name} would give {gpus} GPUs but has {by_name[name].free_gpus} free")


@dataclass
class _Arrays:
    demand: Any  # (jobs,) GPUs
    payment: Any  # (jobs,)
    free: Any  # (nodes,) free GPUs
    per_gpu: Any  # (jobs, nodes): c[j, n], inf where the pair is not compatible


def _arrays(jobs: Sequence[JobDemand], nodes: Sequence[WorkerSupply]) -> _Arrays:
    import numpy as np

    demand = np.array([j.gpus for j in jobs], dtype=np.float64)
    mem = np.array([j.mem_gib for j in jobs], dtype=np.float64)
    payment = np.array([j.payment for j in jobs], dtype=np.float64)
    deadline_s = np.array([j.deadline_s for j in jobs], dtype=np.float64)
    work = np.array([j.work for j in jobs], dtype=np.float64)
    free = np.array([n.free_gpus for n in nodes], dtype=np.float64)
    n_mem = np.array([n.mem_gib for n in nodes], dtype=np.float64)
    price = np.array([n.price_per_gpu_hour for n in nodes], dtype=np.float64)
    speed = np.array([n.speed for n in nodes], dtype=np.float64)
    runtime = work[:, None] / speed[None, :]
    per_gpu = (price[None, :] * 1.0) * runtime
    bad = (n_mem[None, :] < mem[:, None]) | ~(runtime * 3600 <= deadline_s[:, None]) | ~(per_gpu <= payment[:, None])
    bad |= (free <= 0)[None, :]
    per_gpu[bad] = np.inf
    return _Arrays(demand, payment, free, per_gpu)


def split_lagrangian_bound(s: _Arrays, gpu_prices: Any, node_penalty: float) -> tuple[float, Any]:
    """A lower bound on the split program's optimum for any non-negative price per GPU on each node, and a supergradient.

    The node budgets move into the objective at those prices; each job alone then takes its cheapest option: open
    (its payment), one node that holds all of it (D × (c + price)), or a split, bounded below by D × the cheapest
    compatible (c + price) plus π × (max(2, ⌈D / largest compatible node⌉) − 1). Valid whatever the prices (weak
    duality), and the price cap, dropped, only lowers it. Returns (bound, GPUs each node gives minus its free GPUs)."""
    import numpy as np

    lam = np.maximum(np.asarray(gpu_prices, dtype=float), 0.0)
    n, m = s.per_gpu.shape
    if m == 0:
        return float(s.payment.sum()), np.zeros(0)
    finite = np.isfinite(s.per_gpu)
    adjusted = s.per_gpu + lam[None, :]
    holds = finite & (s.free[None, :] >= s.demand[:, None])
    one = np.where(holds, adjusted, np.inf)
    one_at = one.argmin(axis=1)
    one_cost = s.demand * one[np.arange(n), one_at]
    split_at = adjusted.argmin(axis=1)
    reach = np.where(finite, s.free[None, :], 0.0)
    largest = reach.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pieces = np.maximum(2.0, np.ceil(s.demand / np.maximum(largest, 1.0)))
    split_cost = s.demand * adjusted[np.arange(n), split_at] + node_penalty * (pieces - 1)
    split_cost[reach.sum(axis=1) < s.demand] = np.inf  # the compatible nodes together cannot hold it
    options = np.stack([s.payment, one_cost, split_cost])
    pick = options.argmin(axis=0)
    bound = float(options.min(axis=0).sum() - (lam * s.free).sum())
    usage = np.zeros(m)
    np.add.at(usage, one_at[pick == 1], s.demand[pick == 1])
    np.add.at(usage, split_at[pick == 2], s.demand[pick == 2])
    return bound, usage - s.free


def _improve_bound(s: _Arrays, start: Any, incumbent: float, node_penalty: float, until: float, gap: float = 0.0,
                   max_steps: int = 300) -> float:
    """The best Lagrangian bound over subgradient steps from `start` (Polyak steps towards the incumbent), stopping
    once the incumbent is within `gap` of it."""
    import numpy as np

    lam = np.maximum(np.asarray(start, dtype=float), 0.0)
    best, g = split_lagrangian_bound(s, lam, node_penalty)
    theta, stale = 1.0, 0
    for _ in range(max_steps):
        if time.perf_counter() >= until or incumbent - best <= max(gap, 1e-9) * abs(incumbent):
            break
        norm = float((g * g).sum())
        if norm == 0:
            break
        value, _ = split_lagrangian_bound(s, lam, node_penalty)
        lam = np.maximum(0.0, lam + theta * (incumbent - value) / norm * g)
        value, g = split_lagrangian_bound(s, lam, node_penalty)
        if value > best + 1e-9 * abs(best):
            best, stale = value, 0
        else:
            stale += 1
            if stale >= 5:
                theta, stale = theta / 2, 0
                if theta < 1e-4:
                    break
    return best


def _split_milp(s: _Arrays, pj: Any, pn: Any, capacity: Any, start: dict[int, dict[int, int]], time_limit_s: float,
                gap: float, node_penalty: float) -> tuple[dict[int, dict[int, int]] | None, float, str]:
    """The split model over the given pairs (job position, node position) within `capacity` GPUs per node.

    Returns (placements by position, or None without a solution; HiGHS's dual bound on the jobs in the model,
    payments of the open ones included; model status)."""
    import highspy
    import numpy as np

    from llmos_chain.market.allocator import _new_highs

    jobs, jrow = np.unique(pj, return_inverse=True)
    nodes, nrow = np.unique(pn, return_inverse=True)
    nj, nn, p = len(jobs), len(nodes), len(pj)
    cost = s.per_gpu[pj, pn]
    upper = np.minimum(s.demand[pj], capacity[pn])
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = 2 * p + nj, 2 * nj + nn + p
    lp.col_cost_ = np.concatenate([cost, np.full(p, node_penalty), -(s.payment[jobs] + node_penalty)])
    lp.offset_ = float(s.payment[jobs].sum())
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.concatenate([upper, np.ones(p + nj)])
    # rows: Σ a − D x = 0 per job; Σ c a − P x ≤ 0 per job; Σ a ≤ G per node; a − U y ≤ 0 per pair
    lp.row_lower_ = np.concatenate([np.zeros(nj), np.full(nj + nn + p, -inf)])
    lp.row_upper_ = np.concatenate([np.zeros(2 * nj), capacity[nodes], np.zeros(p)])
    a_index = np.stack([jrow, nj + jrow, 2 * nj + nrow, 2 * nj + nn + np.arange(p)], axis=1).ravel()
    a_value = np.stack([np.ones(p), cost, np.ones(p), np.ones(p)], axis=1).ravel()
    y_index, y_value = 2 * nj + nn + np.arange(p), -upper
    x_index = np.stack([np.arange(nj), nj + np.arange(nj)], axis=1).ravel()
    # the price cap a hair inside the payment, so HiGHS's feasibility tolerance cannot let a cost past it (a placement
    # that costs exactly the payment gains nothing over leaving the job open)
    cap = s.payment[jobs] - 1e-6 * np.maximum(1.0, s.payment[jobs])
    x_value = np.stack([-s.demand[jobs], -cap], axis=1).ravel()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([np.arange(0, 4 * p, 4), 4 * p + np.arange(p), 5 * p + np.arange(0, 2 * nj + 1, 2)]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate([a_index, y_index, x_index]).astype(np.int32)
    lp.a_matrix_.value_ = np.concatenate([a_value, y_value, x_value])
    lp.integrality_ = [highspy.HighsVarType.kInteger] * lp.num_col_
    h = _new_highs()
    h.setOptionValue("time_limit", max(0.01, float(time_limit_s)))
    h.setOptionValue("mip_rel_gap", float(gap))
    h.passModel(lp)
    if start:
        where = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(pj.tolist(), pn.tolist(), strict=True))}
        job_row = {int(a): k for k, a in enumerate(jobs.tolist())}
        initial = np.zeros(lp.num_col_)
        for j, on in start.items():
            for node, gpus in on.items():
                k = where[(j, node)]
                initial[k], initial[p + k] = gpus, 1.0
            initial[2 * p + job_row[j]] = 1.0
        sol = highspy.HighsSolution()
        sol.col_value = list(initial)
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    bound = float(info.mip_dual_bound) if math.isfinite(info.mip_dual_bound) else -math.inf
    if info.primal_solution_status != 2:
        return None, bound, status
    a = np.rint(np.asarray(h.getSolution().col_value[:p])).astype(np.int64)
    out: dict[int, dict[int, int]] = {}
    for k in np.flatnonzero(a > 0).tolist():
        out.setdefault(int(pj[k]), {})[int(pn[k])] = int(a[k])
    return out, bound, status


def _engaged(s: _Arrays, current: dict[int, dict[int, int]], node_penalty: float) -> Any:
    """The jobs a split can help: open ones the compatible nodes could hold in pieces, and placed ones whose cheapest
    conceivable split (every GPU at the cheapest compatible node, plus one extra node's penalty) beats their cost."""
    import numpy as np

    n = len(s.demand)
    finite = np.isfinite(s.per_gpu)
    reach = np.where(finite, s.free[None, :], 0.0).sum(axis=1)
    cheapest = s.per_gpu.min(axis=1, initial=np.inf) * s.demand + node_penalty
    cost = s.payment.copy()
    placed = np.zeros(n, dtype=bool)
    for j, on in current.items():
        placed[j] = True
        cost[j] = sum(s.per_gpu[j, node] * gpus for node, gpus in on.items())
    return np.flatnonzero((~placed & (reach >= s.demand)) | (placed & (cheapest < cost - 1e-9)))


def _place_one(s: _Arrays, j: int, capacity: Any, node_penalty: float) -> tuple[dict[int, int], float] | None:
    """Job j's cheapest placement on `capacity` alone: the cheapest node that holds it, or its GPUs on the cheapest
    nodes with room (each filled in turn), whichever costs less with the penalty; None when neither is within its price."""
    import numpy as np

    d = int(s.demand[j])
    row = np.where(capacity > 0, s.per_gpu[j], np.inf)
    options: list[tuple[float, dict[int, int]]] = []
    one = np.where(capacity >= d, row, np.inf)
    n = int(one.argmin()) if len(one) else -1
    if n >= 0 and math.isfinite(one[n]):
        options.append((d * float(one[n]), {n: d}))
    order = np.argsort(row, kind="stable")
    order = order[np.isfinite(row[order])]
    left, on, cost = d, {}, 0.0
    for k in order.tolist():
        g = int(min(left, capacity[k]))
        on[k], cost, left = g, cost + g * float(row[k]), left - g
        if left == 0:
            break
    if left == 0 and len(on) > 1:
        options.append((cost + node_penalty * (len(on) - 1), on))
    if not options:
        return None
    value, on = min(options, key=lambda o: o[0])
    if sum(float(s.per_gpu[j, k]) * g for k, g in on.items()) > s.payment[j] or value >= s.payment[j]:
        return None
    return on, value


def _fill(s: _Arrays, placements: dict[int, dict[int, int]], capacity: Any, node_penalty: float) -> dict[int, dict[int, int]]:
    """Greedy completion: the open jobs, most profit per GPU first (at their cheapest conceivable placement; ties by
    position), each placed by `_place_one` on what `capacity` has left. `capacity` is used up in place."""
    import numpy as np

    out = dict(placements)
    best = s.per_gpu.min(axis=1, initial=np.inf) * s.demand
    density = (s.payment - best) / s.demand
    for j in np.lexsort((np.arange(len(density)), -density)).tolist():
        if j in out or not np.isfinite(density[j]) or density[j] <= 0:
            continue
        placed = _place_one(s, j, capacity, node_penalty)
        if placed is not None:
            out[j] = placed[0]
            for k, g in placed[0].items():
                capacity[k] -= g
    return out


def _split_lp(s: _Arrays, node_penalty: float, start: dict[int, dict[int, int]], incumbent: float, gap: float,
              until: float, notes: list[str]) -> tuple[Any, Any, Any, Any, Any] | None:
    """The split model's LP relaxation by column generation over every compatible pair (y at a / min(D, G), the
    price cap dropped), until the Lagrangian bound at its prices is within `gap` of the incumbent. Returns the last
    restricted LP's (pair jobs, pair nodes, a, x) and the GPU prices per node, of all rounds', whose Lagrangian bound
    is best."""
    import highspy
    import numpy as np

    from llmos_chain.market.allocator import _new_highs

    n, m = s.per_gpu.shape
    finite = np.isfinite(s.per_gpu)
    upper_all = np.minimum(s.demand[:, None], s.free[None, :])
    coef = np.where(finite, s.per_gpu + node_penalty / np.maximum(upper_all, 1.0), np.inf)
    present = np.zeros((n, m), dtype=bool)
    k = min(8, m)
    near = np.argpartition(coef, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (n, 1))
    present[np.repeat(np.arange(n), near.shape[1]), near.ravel()] = True
    # and each node's most profitable jobs per GPU: GPUs are scarce, so which jobs the nodes take is the LP's choice
    top = min(48, n)
    per_gpu_profit = coef - (s.payment / s.demand)[:, None]
    best_jobs = np.argpartition(per_gpu_profit, top - 1, axis=0)[:top] if top < n else np.tile(np.arange(n)[:, None], (1, m))
    present[best_jobs.ravel(), np.tile(np.arange(m), best_jobs.shape[0])] = True
    for j, on in start.items():
        present[j, list(on)] = True
    present &= finite
    inf = highspy.kHighsInf
    # columns: x per job first, then the pairs in the order they enter; rows: Σ a − D x = 0 per job, Σ a ≤ G per node
    col_j: list[Any] = []
    col_n: list[Any] = []

    def columns(jj: Any, nn: Any) -> tuple[Any, Any, Any]:
        col_j.append(jj)
        col_n.append(nn)
        return (np.arange(0, 2 * len(jj), 2, dtype=np.int32), np.stack([jj, n + nn], axis=1).ravel().astype(np.int32),
                np.ones(2 * len(jj)))

    pj, pn = np.nonzero(present)
    starts, index, value = columns(pj, pn)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n + len(pj), n + m
    lp.col_cost_ = np.concatenate([-(s.payment + node_penalty), coef[pj, pn]])
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.concatenate([np.ones(n), upper_all[pj, pn]])
    lp.row_lower_ = np.concatenate([np.zeros(n), np.full(m, -inf)])
    lp.row_upper_ = np.concatenate([np.zeros(n), s.free])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([np.arange(n), n + starts, [n + len(index)]]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate([np.arange(n, dtype=np.int32), index])
    lp.a_matrix_.value_ = np.concatenate([-s.demand, value])
    h = _new_highs()
    h.passModel(lp)
    result = None
    rounds = 0
    best_bound, best_lam = -math.inf, np.zeros(m)
    while time.perf_counter() < until:
        t_round = time.perf_counter()
        # HiGHS's time limit counts the instance's run time over all its runs
        h.setOptionValue("time_limit", h.getRunTime() + max(0.01, until - time.perf_counter()))
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal":
            notes.append(f"split LP: {status}")
            break
        rounds += 1
        sol = h.getSolution()
        values, duals = np.asarray(sol.col_value), np.asarray(sol.row_dual)
        u, lam = duals[:n], np.maximum(-duals[n:], 0.0)
        # a restricted LP's prices are not yet the LP's: keep those whose Lagrangian bound is best so far
        value_at, _ = split_lagrangian_bound(s, lam, node_penalty)
        if value_at > best_bound:
            best_bound, best_lam = value_at, lam
        cj, cn = np.concatenate(col_j), np.concatenate(col_n)
        result = (cj, cn, values[n:], values[:n], best_lam)
        if incumbent - best_bound <= gap * abs(incumbent):
            break
        reduced = coef + lam[None, :] - u[:, None]
        reduced[present | ~finite] = np.inf
        entering = reduced < -1e-7
        if not entering.any():
            break
        rows = np.flatnonzero(entering.any(axis=1))
        e = min(2, m)
        pick = np.argpartition(reduced[rows], e - 1, axis=1)[:, :e] if e < m else np.tile(np.arange(m), (len(rows), 1))
        jj, ww = np.repeat(rows, pick.shape[1]), pick.ravel()
        keep = reduced[jj, ww] < -1e-7
        # and the most negative reduced costs per GPU over all pairs
        flat = (reduced / s.demand[:, None]).ravel()
        many = min(10_000, flat.size - 1)
        most = np.argpartition(flat, many)[:many]
        most = most[flat[most] < -1e-7]
        key = np.unique(np.concatenate([jj[keep] * m + ww[keep], most]))
        jj, ww = key // m, key % m
        present[jj, ww] = True
        starts, index, value = columns(jj, ww)
        h.addCols(len(jj), coef[jj, ww], np.zeros(len(jj)), upper_all[jj, ww], len(index), starts, index, value)
        if until - time.perf_counter() < 0.5 * (time.perf_counter() - t_round):
            break  # another round would hardly finish in time
    notes.append(f"split LP: {rounds} rounds, {int(present.sum())} columns, Lagrangian {best_bound:.6g}")
    return result


def _large_split(s: _Arrays, best: dict[int, dict[int, int]], until: float, gap: float, node_penalty: float,
                 notes: list[str]) -> tuple[dict[int, dict[int, int]], Any]:
    """The large path: the split LP (column generation); the jobs it places whole on whole GPUs kept; a MILP over the
    jobs it leaves fractional, on their LP columns and the GPUs left; a greedy fill of what is still open. Returns
    (placements, GPU prices per node or None)."""
    import numpy as np

    t = time.perf_counter()
    lp = _split_lp(s, node_penalty, best, _value(s, best, node_penalty), gap, t + 0.6 * (until - t), notes)
    if lp is None:
        return best, None
    pj, pn, a, x, lam = lp
    fixed: dict[int, dict[int, int]] = {}
    whole = np.abs(a - np.rint(a)) < 1e-6
    for j in np.flatnonzero(x > 1 - 1e-6).tolist():
        cols = np.flatnonzero((pj == j) & (a > 1e-6))
        if whole[cols].all():
            fixed[j] = {int(pn[c]): int(round(a[c])) for c in cols}
    capacity = s.free.copy()
    for on in fixed.values():
        for k, g in on.items():
            capacity[k] -= g
    loose = np.flatnonzero((x > 1e-6) & ~np.isin(np.arange(len(x)), list(fixed)))
    candidate = dict(fixed)
    if len(loose) and time.perf_counter() < until - 0.02:
        sel = np.isin(pj, loose) & (capacity[pn] > 0)
        if sel.any():
            found, _, status = _split_milp(s, pj[sel], pn[sel], capacity, {}, until - time.perf_counter(), gap, node_penalty)
            notes.append(f"split core MILP: {status}, {len(loose)} fractional jobs, {int(sel.sum())} pairs")
            for j, on in (found or {}).items():
                candidate[j] = on
                for k, g in on.items():
                    capacity[k] -= g
    candidate = _fill(s, candidate, capacity, node_penalty)
    if _value(s, candidate, node_penalty) < _value(s, best, node_penalty) - 1e-9:
        return candidate, lam
    return best, lam


def allocate_split(jobs: Sequence[JobDemand], nodes: Sequence[WorkerSupply], time_limit_s: float = 2.0,
                   gap: float = 0.005, node_penalty: float = DEFAULT_NODE_PENALTY) -> SplitAllocation:
    """Place each job's GPUs on one node or, where needed or cheaper, several; see the module's docstring.

    Never worse than `allocate` on the same jobs and nodes (its packed allocation is the starting incumbent); building
    counts in `solve_s`. `bound` is a proven lower bound on the split program, `gap` the objective's distance to it."""
    import numpy as np

    if not 0 < time_limit_s < math.inf:
        raise AllocationError(f"the time limit must be a number of seconds above 0, got {time_limit_s}")
    if not 0 <= node_penalty < math.inf:
        raise AllocationError(f"the penalty per extra node must be a number ≥ 0, got {node_penalty}")
    t = time.perf_counter()
    deadline = t + time_limit_s
    s = _arrays(jobs, nodes)
    node_pos = {w.worker: i for i, w in enumerate(nodes)}
    job_pos = {j.job_id: i for i, j in enumerate(jobs)}
    # the packed program gets most of the time when no job is larger than a node (the split then only refines it)
    oversize = any(j.gpus > max((n.free_gpus for n in nodes), default=0) for j in jobs)
    packed = allocate(jobs, nodes, time_limit_s=(0.4 if oversize else 0.6) * time_limit_s, gap=gap)
    notes = [f"packed: {packed.status}, {len(packed.assignments)} jobs"]
    best = {job_pos[j]: {node_pos[w]: jobs[job_pos[j]].gpus} for j, w in packed.assignments.items()}
    prices = packed.prices if packed.prices is not None else np.zeros(len(nodes))
    bound = -math.inf
    engaged = _engaged(s, best, node_penalty)
    n_pairs = int(np.isfinite(s.per_gpu).sum())
    if len(engaged) == 0:
        notes.append("no job a split can help: the packed allocation stands")
    else:
        greedy = _fill(s, {}, s.free.copy(), node_penalty)
        if _value(s, greedy, node_penalty) < _value(s, best, node_penalty) - 1e-9:
            best = greedy
            notes.append("the split greedy beats the packed allocation")
        until = time.perf_counter() + 0.75 * (deadline - time.perf_counter())
        if n_pairs <= WHOLE_MODEL_UP_TO:
            finite = np.isfinite(s.per_gpu)
            pj, pn = np.nonzero(finite)
            found, model_bound, status = _split_milp(s, pj, pn, s.free, best, until - time.perf_counter(), gap, node_penalty)
            notes.append(f"whole split model: {status}, {n_pairs} pairs, {len(engaged)} jobs engaged")
            bound = model_bound + float(s.payment[~finite.any(axis=1)].sum())
            if found is not None and _value(s, found, node_penalty) < _value(s, best, node_penalty) - 1e-9:
                best = found
        else:
            best, lam = _large_split(s, best, until, gap, node_penalty, notes)
            if lam is not None:
                prices = lam
    incumbent = _value(s, best, node_penalty)
    if incumbent - bound <= gap * abs(incumbent):  # the whole model's bound is close enough already
        lagrangian = -math.inf
    else:
        lagrangian = _improve_bound(s, prices, incumbent, node_penalty, max(deadline, time.perf_counter() + 0.05), gap)
    bound = min(incumbent, max(bound, lagrangian))
    placements = {jobs[j].job_id: {nodes[n].worker: g for n, g in on.items()} for j, on in best.items()}
    check_split(jobs, nodes, placements)
    value = split_objective(jobs, nodes, placements, node_penalty)
    bound = float(min(bound, value))
    label = "optimal" if value - bound <= (gap + 1e-12) * abs(value) else "feasible"  # relative: tiny payments too
    return SplitAllocation(placements, value, bound, label, time.perf_counter() - t, notes)


def _value(s: _Arrays, placements: dict[int, dict[int, int]], node_penalty: float) -> float:
    total = float(s.payment.sum())
    for j, on in placements.items():
        total += sum(float(s.per_gpu[j, n]) * g for n, g in on.items()) - s.payment[j] + node_penalty * (len(on) - 1)
    return total
