"""The allocation program's LP relaxation as a transportation problem, solved exactly by min-cost flow.

Job j brings g_j GPU units; a unit costs κ[j, w] = cost[j, w] / g_j on a worker it fits, or π_j = payment_j / g_j left
open; worker w takes at most its free GPUs. With y[j, w] = g_j · x[j, w] this is exactly the LP relaxation of the
program in `allocator` (each job at most once, each worker within its free GPUs), and a transportation problem: its
optimum is integral in units, so when every job needs one GPU the flow *is* the integer optimum.

Column generation over every fitting pair, with a min-cost flow solver (OR-Tools, integer costs: the per-unit costs
scaled to integers) for each restricted problem. The flow solver reports no duals, so the worker prices λ are recovered
exactly, in integers, from the flow's optimality conditions: for a job with units on worker w and any other arc (j, w'),
κ[j, w] + λ_w ≤ κ[j, w'] + λ_w'; a job left (partly) open prices every arc at π_j or more; a worker with a unit of
room has λ_w = 0; λ ≥ 0. Those are difference constraints on the workers alone, solved by shortest paths
(Bellman-Ford from a zero node). Every pair is then priced at once on the dense matrix, at prices smoothed towards the
best seen (Wentges) and at the restricted LP's own; each job's pairs of most negative reduced cost, and the negative
ones among random pairs of each job (alone, the most negative crowd onto the same few workers), enter. At any prices the
Lagrangian value (`allocator.dense_lagrangian_bound`) is a proven lower bound; it reaches the LP optimum when no pair
prices negative.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

#: Per-unit costs and payments are scaled so that the largest is this (int32 arithmetic on the dense matrix stays
#: below 2**31 with the prices added).
_TOP = 2**28
_NOFIT = 2**29  # the scaled cost of a pair that does not fit (and of a pair already in the problem, when pricing)
_INITIAL_PER_JOB = 8  # each job's cheapest pairs at the starting prices
_INITIAL_PER_WORKER = 48  # each worker's pairs of least reduced cost at the starting prices
_ENTERING_PER_JOB = 5  # per round: each job's pairs of most negative reduced cost
_PROBES = 48  # per round, random pairs tried per job with a negative one
_START_WITHIN = 0.6  # a round starts only this fraction of the last round's time or more before the deadline
_SMOOTHING = 0.8  # pricing at this weight on the best prices so far, the rest on the restricted LP's


@dataclass
class FlowLP:
    """The outcome of `solve`: the last restricted flow, the best prices and the proven bound at them."""

    arc_job: Any  # the arcs of the last restricted problem (numpy int arrays) and their flows in GPU units
    arc_worker: Any
    arc_flow: Any
    prices: Any  # per GPU per worker (float): the prices of the best Lagrangian value seen
    bound: float  # proven lower bound on the integer optimum (float64, at `prices`)
    lp_value: float  # the last restricted LP's value (true costs)
    rounds: int
    converged: bool  # no pair priced negative: the restricted LP is the full LP's optimum
    incumbent: Any  # the best integral allocation seen (worker position per job, -1 open), or None
    incumbent_cost: float


def _scaled(d: Any) -> tuple[Any, Any, float]:
    """Per-unit costs and payments as integers (int32, `_NOFIT` where a pair does not fit) and the scale used."""
    import numpy as np

    n, m = d.cost.shape
    per_payment = d.payment / d.gpus
    finite_top = 0.0
    step = max(1, 2_000_000 // max(1, m))
    for a in range(0, n, step):
        block = d.cost[a : a + step]
        fin = np.isfinite(block)
        if fin.any():
            finite_top = max(finite_top, float((block[fin] / np.repeat(d.gpus[a : a + step], fin.sum(axis=1))).max()))
    top = max(finite_top, float(per_payment.max(initial=0.0)), 1e-300)
    scale = _TOP / top
    ki = np.empty((n, m), dtype=np.int32)
    for a in range(0, n, step):
        block = d.cost[a : a + step] / d.gpus[a : a + step, None] * scale
        fit = np.isfinite(block)
        np.rint(block, out=block, where=fit)
        block[~fit] = _NOFIT
        ki[a : a + step] = block
    pi = np.rint(per_payment * scale).astype(np.int64)
    return ki, pi, scale


def _prices(n: int, m: int, ki: Any, pi: Any, gpus: Any, free: Any, aj: Any, aw: Any, flow: Any) -> Any:
    """Exact worker prices (scaled integers) for an optimal restricted flow, from its optimality conditions as difference
    constraints (see the module's docstring); None if they are inconsistent (the flow was not optimal)."""
    import numpy as np

    zero = m  # the zero node: λ_w = dist[w] − dist[zero]
    on = flow > 0
    fj, fw = aj[on], aw[on]
    # every arc (j, w') of a job with units on w: λ_w − λ_w' ≤ κ[j, w'] − κ[j, w], an edge w' → w
    first = np.searchsorted(aj, np.arange(n + 1))  # the arcs are sorted by job
    count = first[fj + 1] - first[fj]
    at = _ranges(first[fj], count)
    to = np.repeat(fw, count)
    src = aw[at]
    jobs_ = np.repeat(fj, count)
    weight = ki[jobs_, src].astype(np.int64) - ki[jobs_, to]
    parts = [(src, to, weight)]
    used = np.bincount(aj, weights=flow, minlength=n)
    left_open = used < gpus - 0.5
    mask = left_open[aj]  # a job with units left open: π_j ≤ κ[j, w'] + λ_w', an edge w' → zero
    parts.append((aw[mask], np.full(int(mask.sum()), zero), ki[aj[mask], aw[mask]].astype(np.int64) - pi[aj[mask]]))
    # a job with units on w: κ[j, w] + λ_w ≤ π_j, an edge zero → w; a worker with room: λ_w ≤ 0
    parts.append((np.full(len(fw), zero), fw, pi[fj] - ki[fj, fw]))
    load = np.bincount(aw, weights=flow, minlength=m)
    room = np.flatnonzero(load < free - 0.5)
    parts.append((np.full(len(room), zero), room, np.zeros(len(room), dtype=np.int64)))
    parts.append((np.arange(m), np.full(m, zero), np.zeros(m, dtype=np.int64)))  # λ_w ≥ 0: an edge w → zero
    src, to, weight = (np.concatenate(x) for x in zip(*parts, strict=True))
    keep = src != to
    dist = _shortest_paths(m + 1, src[keep], to[keep], weight[keep], zero)
    if dist is None:
        return None
    unreached = dist >= _UNREACHED
    return np.maximum(np.where(unreached[:m], 0, dist[:m] - dist[zero]), 0)


_UNREACHED = 2**62


def _ranges(starts: Any, counts: Any) -> Any:
    """The indices starts[i], …, starts[i] + counts[i] − 1 of every i, concatenated."""
    import numpy as np

    offsets = np.cumsum(counts) - counts
    return np.repeat(starts, counts) + (np.arange(int(counts.sum())) - np.repeat(offsets, counts))


def _shortest_paths(nodes: int, src: Any, to: Any, weight: Any, source: int) -> Any:
    """Bellman-Ford from `source` over the given edges (integers; parallel edges allowed), relaxing only the edges out of
    nodes whose distance changed; `_UNREACHED` where no path; None on a negative cycle."""
    import numpy as np

    dist = np.full(nodes, _UNREACHED, dtype=np.int64)
    dist[source] = 0
    if not len(src):
        return dist
    key = src.astype(np.int64) * nodes + to
    order = np.argsort(key, kind="stable")
    key, weight = key[order], weight[order]
    head = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    weight = np.minimum.reduceat(weight, head)  # the lightest of parallel edges
    key = key[head]
    src, to = key // nodes, key % nodes
    out = np.searchsorted(src, np.arange(nodes + 1))  # the edges are sorted by source
    changed = np.array([source])
    for _ in range(nodes + 1):
        edges = _ranges(out[changed], out[changed + 1] - out[changed])
        reach = np.full(nodes, _UNREACHED, dtype=np.int64)
        np.minimum.at(reach, to[edges], dist[src[edges]] + weight[edges])
        better = reach < dist
        if not better.any():
            return dist
        dist = np.where(better, reach, dist)
        changed = np.flatnonzero(better)
    return None  # still improving after every path length: a negative cycle


def _min_cost_flow(n: int, m: int, ki: Any, pi: Any, gpus: Any, free: Any, aj: Any, aw: Any) -> Any:
    """The restricted transportation problem on arcs (aj, aw): the flow per arc, or None if the solver fails."""
    import numpy as np
    from ortools.graph.python import min_cost_flow

    sink = n + m
    f = min_cost_flow.SimpleMinCostFlow()
    units = gpus.astype(np.int64)
    tails = np.concatenate([aj, np.arange(n), n + np.arange(m)])
    heads = np.concatenate([n + aw, np.full(n, sink), np.full(m, sink)])
    capacity = np.concatenate([units[aj], units, free.astype(np.int64)])
    cost = np.concatenate([ki[aj, aw].astype(np.int64), pi, np.zeros(m, dtype=np.int64)])
    f.add_arcs_with_capacity_and_unit_cost(tails, heads, capacity, cost)
    f.set_nodes_supplies(np.arange(n + m + 1), np.concatenate([units, np.zeros(m, dtype=np.int64), [-units.sum()]]))
    if f.solve() != f.OPTIMAL:
        return None
    return np.asarray(f.flows(np.arange(len(aj))), dtype=np.float64)


def integral_choice(n: int, aj: Any, aw: Any, flow: Any, gpus: Any) -> tuple[Any, Any]:
    """(worker position per job where the flow puts all its units on one worker, else -1; mask of jobs split)."""
    import numpy as np

    choice = np.full(n, -1, dtype=np.int64)
    whole = flow >= gpus[aj] - 0.5
    choice[aj[whole]] = aw[whole]
    some = np.zeros(n, dtype=bool)
    some[aj[flow > 0]] = True
    return choice, some & (choice < 0)


def solve(d: Any, start_prices: Any, starts: list[Any], until: float, gap: float, notes: list[str]) -> FlowLP | None:
    """Column generation for the LP relaxation until `until` (a perf_counter time), the gap reached, or no pair prices
    negative. `starts`: allocations (worker position per job) whose pairs are in the first restricted problem."""
    import numpy as np

    from llmos_chain.market.allocator import _cost_of, _greedy_positions, dense_lagrangian_bound

    n, m = d.cost.shape
    ki, pi, scale = _scaled(d)
    units = d.gpus.astype(np.int64)
    # capped before the integer cast: prices past 2**63 / scale (or inf, NaN) would wrap to garbage
    lam = np.rint(np.clip(np.nan_to_num(np.asarray(start_prices, dtype=float) * scale, nan=0.0), 0, _TOP)).astype(np.int64)
    buf = np.empty((n, m), dtype=np.int32)
    present = np.zeros((n, m), dtype=bool)

    def reduced(lam: Any) -> Any:
        """buf ← κ + λ; returns each job's best option per unit (open included)."""
        np.add(ki, lam.astype(np.int32)[None, :], out=buf)
        return np.minimum(buf.min(axis=1).astype(np.int64), pi)

    # the first restricted problem: each job's cheapest pairs and each worker's least reduced costs at the start prices
    best = reduced(lam)
    k = min(_INITIAL_PER_JOB, m)
    pick = np.argpartition(buf, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (n, 1))
    present[np.repeat(np.arange(n), pick.shape[1]), pick.ravel()] = True
    buf -= best.astype(np.int32)[:, None]
    k = min(_INITIAL_PER_WORKER, n)
    pick = np.argpartition(buf, k - 1, axis=0)[:k] if k < n else np.tile(np.arange(n)[:, None], (1, m))
    present[pick.ravel(), np.tile(np.arange(m), pick.shape[0])] = True
    for choice in starts:
        on = choice >= 0
        present[np.flatnonzero(on), choice[on]] = True
    present &= ki < _NOFIT
    aj, aw = np.nonzero(present)

    best_value, best_lam = -math.inf, lam
    incumbent, incumbent_cost = None, math.inf
    for choice in starts:
        cost = _cost_of(d, choice)
        if cost < incumbent_cost:
            incumbent, incumbent_cost = choice, cost

    def evaluate(lam: Any) -> None:
        """buf ← κ + λ, and the Lagrangian value at λ (scaled integers) kept if it is the best so far."""
        nonlocal best_value, best_lam
        best = reduced(lam)
        value = (float((best * units).sum()) - float((lam * d.free).sum())) / scale
        if value > best_value:
            best_value, best_lam = value, lam

    def enter(aj: Any, aw: Any) -> tuple[bool, int]:
        """With buf = κ + λ: each job's pairs of most negative reduced cost at λ, and the negative ones among random
        pairs of each job, join the problem (pairs already in it never enter again); returns whether any
        pair outside (aj, aw) prices negative, and how many pairs are new."""
        inside = buf[aj, aw].astype(np.int64)
        first = np.searchsorted(aj, np.arange(n))
        has = first < np.searchsorted(aj, np.arange(n), side="right")
        u = pi.copy()  # each job's best option at λ over its pairs in the problem
        if len(inside):
            u[has] = np.minimum(u[has], np.minimum.reduceat(inside, first[has]))
        buf[aj, aw] = _NOFIT
        np.subtract(buf, u.astype(np.int32)[:, None], out=buf)
        negative = buf < 0
        if not negative.any():
            return False, 0
        rows = np.flatnonzero(negative.any(axis=1))
        sub = buf[rows]
        e = min(_ENTERING_PER_JOB, m)
        pick = np.argpartition(sub, e - 1, axis=1)[:, :e] if e < m else np.tile(np.arange(m), (len(rows), 1))
        nj, nw = np.repeat(rows, pick.shape[1]), pick.ravel()
        if _PROBES:  # and, per job, the negative ones among random pairs: the most negative alone crowd onto a few workers
            rj = np.repeat(rows, _PROBES)
            rw = rng.integers(0, m, size=len(rj))
            nj, nw = np.concatenate([nj, rj]), np.concatenate([nw, rw])
        keep = negative[nj, nw]
        nj, nw = nj[keep], nw[keep]
        added = int((~present[nj, nw]).sum())
        present[nj, nw] = True
        return True, added

    rng = np.random.default_rng(0)  # seeded: the same batch gives the same allocation
    evaluate(lam)  # the start prices are the first stability centre
    rounds, converged, flow, solved = 0, False, None, (aj, aw)
    lp_value, ended = math.inf, "out of time"
    round_s = 0.0
    while time.perf_counter() + _START_WITHIN * round_s < until:  # a round that would end far past `until` is not started
        began = time.perf_counter()
        new_flow = _min_cost_flow(n, m, ki, pi, d.gpus, d.free, aj, aw)
        if new_flow is None:
            ended = "no optimal flow"
            break
        new_lam = _prices(n, m, ki, pi, d.gpus, d.free, aj, aw, new_flow)
        if new_lam is None:
            ended = "inconsistent prices"
            break
        flow, lam, rounds, solved = new_flow, new_lam, rounds + 1, (aj, aw)
        lp_value = float((d.cost[aj, aw] / d.gpus[aj] * flow).sum()
                         + (d.payment / d.gpus * (d.gpus - np.bincount(aj, weights=flow, minlength=n))).sum())
        choice, split = integral_choice(n, aj, aw, flow, d.gpus)
        if split.any():
            choice = _greedy_positions(d, choice)
        cost = _cost_of(d, choice)
        if cost < incumbent_cost:
            incumbent, incumbent_cost = choice, cost
        # price every pair at a point between the best prices so far (the stability centre) and the restricted LP's
        # (Wentges smoothing: the restricted duals alone jump about and bring in pairs far from the optimum's)
        evaluate(lam)
        if incumbent_cost - best_value <= gap * abs(incumbent_cost):
            ended = "gap reached"
            break
        if best_lam is not lam:
            smooth = np.rint(_SMOOTHING * best_lam + (1 - _SMOOTHING) * lam).astype(np.int64)
            evaluate(smooth)
            if incumbent_cost - best_value <= gap * abs(incumbent_cost):
                ended = "gap reached"
                break
            enter(aj, aw)
            reduced(lam)  # and at the restricted LP's own prices: alone, the smoothed ones can stall the LP
        if not enter(aj, aw)[0]:
            converged, ended = True, "converged"
            break
        aj, aw = np.nonzero(present)
        round_s = time.perf_counter() - began
    notes.append(f"min-cost flow: {rounds} rounds, {len(solved[0])} pairs, {ended}")
    if flow is None:
        return None
    # the proven bound in float64 at the best prices (the scaled values only steered)
    prices = best_lam / scale
    bound = dense_lagrangian_bound(d, prices)
    return FlowLP(*solved, flow, prices, bound, lp_value, rounds, converged, incumbent, incumbent_cost)
