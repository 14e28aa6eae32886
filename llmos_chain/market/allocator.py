"""Allocate a batch of open jobs to this provider's workers with a mixed-integer program.

Variables x[j, w] ∈ {0, 1} exist only for pairs that fit: enough GPU memory and GPUs, the worker's
price × GPUs × estimated runtime within the job's payment, and the estimated runtime before the
deadline. Each job goes to at most one worker; the GPUs a worker gives to the batch stay within its
free GPUs.

Objective (minimised): Σ cost[j, w]·x[j, w] + Σ payment[j]·(1 − Σ_w x[j, w]) — running a job costs the
provider its price for the time, and leaving one open forgoes its payment. Equivalently, the most
profit (payment − cost) over the jobs scheduled. The seed document's form (spread a demand D over nodes
of capacity R_i at least cost) is the one-job case of the split program in `split.py`, which lets a job's GPUs
span several workers and starts from this program's allocation.

Solved by HiGHS (through pulp and highspy) with a time limit and a relative gap; CBC is the fallback.
`sol_status` is read, never assumed: without a feasible solution the greedy allocation is used, and
any solution is checked against the constraints before it is returned. Small batches get the full LP and
branch and bound; above COLUMN_GENERATION_FROM fitting pairs, the LP relaxation as a transportation problem, by
column generation with a min-cost flow solver (OR-Tools, see `flow`), warm-started by a Lagrangian method (see `_large`).
The bound reported is always proven: an LP optimum, HiGHS's MIP dual bound, or a Lagrangian value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmos_chain.errors import AllocationError


@dataclass(frozen=True)
class JobDemand:
    job_id: int
    gpus: int
    mem_gib: int
    payment: float  # what the job pays (the escrow), in the same unit as worker prices × hours
    deadline_s: float  # seconds from now
    work: float  # estimated GPU-hours at speed 1.0 (from the runtime estimator)


@dataclass(frozen=True)
class WorkerSupply:
    worker: str
    free_gpus: int
    mem_gib: int
    price_per_gpu_hour: float
    speed: float = 1.0  # relative throughput of this worker class (adapted from observed runs)


@dataclass
class Allocation:
    assignments: dict[int, str]
    cost: float  # the objective: running costs plus payments forgone
    bound: float  # the solver's proven lower bound on the objective (= cost for greedy without a bound)
    status: str  # "optimal", "feasible" (time or gap limit), or "greedy"
    solve_s: float
    variables: int = 0
    notes: list[str] = field(default_factory=list)
    prices: Any = None  # each worker's price per GPU: the LP's duals, or the Lagrangian method's prices (numpy array; None without either)

    @property
    def gap(self) -> float:
        return 0.0 if self.cost == 0 else max(0.0, (self.cost - self.bound) / abs(self.cost))


def runtime_hours(job: JobDemand, worker: WorkerSupply) -> float:
    return job.work / worker.speed


def pair_cost(job: JobDemand, worker: WorkerSupply) -> float:
    return worker.price_per_gpu_hour * job.gpus * runtime_hours(job, worker)


def fits(job: JobDemand, worker: WorkerSupply) -> bool:
    return (
        worker.mem_gib >= job.mem_gib
        and worker.free_gpus >= job.gpus
        and pair_cost(job, worker) <= job.payment
        and runtime_hours(job, worker) * 3600 <= job.deadline_s
    )


def objective(jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply], assignments: dict[int, str]) -> float:
    by_name = {w.worker: w for w in workers}
    total = 0.0
    for job in jobs:
        w = assignments.get(job.job_id)
        total += pair_cost(job, by_name[w]) if w is not None else job.payment
    return total


def check(jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply], assignments: dict[int, str]) -> None:
    """Raise AllocationError unless every assignment fits and no worker is over its free GPUs."""
    by_name = {w.worker: w for w in workers}
    by_id = {j.job_id: j for j in jobs}
    used: dict[str, int] = {}
    for job_id, name in assignments.items():
        job, worker = by_id[job_id], by_name[name]
        if not fits(job, worker):
            raise AllocationError(f"job {job_id} does not fit worker {name}")
        used[name] = used.get(name, 0) + job.gpus
    for name, gpus in used.items():
        if gpus > by_name[name].free_gpus:
            raise AllocationError(f"worker {name} would run {gpus} GPUs but has {by_name[name].free_gpus} free")


def greedy(jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply], fixed: dict[int, str] | None = None,
           dense: "_Dense | None" = None) -> Allocation:
    """Most profit per GPU first (a job's profit at its cheapest fitting worker; ties by job id), each to the
    fitting worker with spare GPUs that costs least (ties: the earlier worker).

    `fixed` assignments are kept and their GPUs taken first (how an LP solution's integral part is completed).
    """
    import numpy as np

    t = time.perf_counter()
    d = dense or _dense(jobs, workers)
    start = None
    if fixed:
        job_pos = {j.job_id: i for i, j in enumerate(jobs)}
        worker_pos = {w.worker: i for i, w in enumerate(workers)}
        start = np.full(len(jobs), -1, dtype=np.int64)
        for job_id, name in fixed.items():
            start[job_pos[job_id]] = worker_pos[name]
    choice = _greedy_positions(d, start)
    assignments = _to_assignments(jobs, workers, choice)
    return Allocation(assignments, objective(jobs, workers, assignments), -math.inf, "greedy", time.perf_counter() - t)


@dataclass
class _Dense:
    """Every (job, worker) pair at once: `cost[j, w]` is `pair_cost` (computed with the same floating-point
    operations, so `fit` agrees with `fits` exactly) and +inf where the pair does not fit."""

    gpus: "Any"
    payment: "Any"
    job_ids: "Any"
    free: "Any"
    cost: "Any"  # n_jobs × n_workers, inf where the job does not fit the worker

    @property
    def n_pairs(self) -> int:
        import numpy as np

        return int(np.isfinite(self.cost).sum())


def _dense(jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply]) -> _Dense:
    import numpy as np

    gpus = np.array([j.gpus for j in jobs], dtype=np.float64)
    mem = np.array([j.mem_gib for j in jobs], dtype=np.float64)
    payment = np.array([j.payment for j in jobs], dtype=np.float64)
    deadline_s = np.array([j.deadline_s for j in jobs], dtype=np.float64)
    work = np.array([j.work for j in jobs], dtype=np.float64)
    w_free = np.array([w.free_gpus for w in workers], dtype=np.float64)
    w_mem = np.array([w.mem_gib for w in workers], dtype=np.float64)
    w_price = np.array([w.price_per_gpu_hour for w in workers], dtype=np.float64)
    w_speed = np.array([w.speed for w in workers], dtype=np.float64)
    cost = np.empty((len(jobs), len(workers)))
    step = max(1, 2_000_000 // max(1, len(workers)))
    for a in range(0, len(jobs), step):  # in row blocks: the temporaries stay small
        b = min(len(jobs), a + step)
        runtime = work[a:b, None] / w_speed[None, :]
        block = (w_price[None, :] * gpus[a:b, None]) * runtime  # price × gpus × runtime, as pair_cost
        bad = (w_mem[None, :] < mem[a:b, None]) | (w_free[None, :] < gpus[a:b, None]) | ~(block <= payment[a:b, None])
        bad |= ~(runtime * 3600 <= deadline_s[a:b, None])
        block[bad] = np.inf
        cost[a:b] = block
    return _Dense(gpus, payment, np.array([j.job_id for j in jobs]), w_free, cost)


def _greedy_positions(d: _Dense, fixed: "Any | None" = None) -> "Any":
    """Greedy on the dense arrays: `fixed[j]` is a worker position or -1; returns each job's worker position (-1: open)."""
    import numpy as np

    n = len(d.gpus)
    choice = np.full(n, -1, dtype=np.int64) if fixed is None else np.asarray(fixed, dtype=np.int64).copy()
    free = d.free.copy()
    taken = choice >= 0
    np.subtract.at(free, choice[taken], d.gpus[taken])
    best = d.cost.min(axis=1) if d.cost.shape[1] else np.full(n, np.inf)
    has = np.isfinite(best) & ~taken
    density = np.where(has, (d.payment - best) / d.gpus, -np.inf)
    order = np.lexsort((d.job_ids, -density))  # most profit per GPU first, then the lower job id
    order = order[has[order]]
    cost, gpus = d.cost, d.gpus
    for i in order.tolist():
        row = np.where(free >= gpus[i], cost[i], np.inf)
        w = int(row.argmin())  # the cheapest fitting worker with spare GPUs (the lowest position on a tie)
        if row[w] < np.inf:
            free[w] -= gpus[i]
            choice[i] = w
    return choice


def _cost_of(d: _Dense, choice: "Any") -> float:
    import numpy as np

    on = choice >= 0
    return float(d.cost[np.flatnonzero(on), choice[on]].sum() + d.payment[~on].sum())


def _to_assignments(jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply], choice: "Any") -> dict[int, str]:
    return {jobs[i].job_id: workers[w].worker for i, w in enumerate(choice.tolist()) if w >= 0}


@dataclass
class _Model:
    """The program as arrays: one column per fitting (job, worker) pair, then one `open` column per job."""

    pair_job: "Any"  # numpy int arrays / float arrays
    pair_worker: "Any"
    pair_cost: "Any"
    gpus: "Any"
    payment: "Any"
    free: "Any"


def _build(d: _Dense) -> _Model:
    """The fitting pairs of the dense arrays as one column each (job-major, workers in order)."""
    import numpy as np

    jj, ww = np.nonzero(np.isfinite(d.cost))
    return _Model(jj, ww, d.cost[jj, ww], d.gpus, d.payment, d.free)


def _new_highs() -> Any:
    """A silent HiGHS instance: the library prints its banner on stdout when first created, which would
    corrupt `--json` output, so the process's stdout is pointed at /dev/null for that moment."""
    import os
    import sys

    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h


def _solve_highs(model: _Model, n_jobs: int, n_workers: int, start: dict[int, int], time_limit_s: float, gap: float,
                 relax: bool = False, duals: list[Any] | None = None) -> tuple[Any, float, float, str]:
    """Returns (pair values, objective, dual bound, model status name) from HiGHS via highspy.

    For an LP (`relax`), the row duals are appended to `duals` when given.
    """
    import highspy
    import numpy as np

    n_pairs = len(model.pair_job)
    lp = highspy.HighsLp()
    lp.num_col_ = n_pairs + n_jobs
    lp.num_row_ = n_jobs + n_workers
    # the objective in units of its largest coefficient: HiGHS's tolerances are absolute (1e-7 on reduced costs, 1e-6
    # on the MIP gap), so payments of a billionth of a unit would otherwise all look optimal, and its bound unproven
    unit = float(max(np.abs(model.payment).max(initial=0.0), np.abs(model.pair_cost).max(initial=0.0)))
    unit = unit if 0 < unit < math.inf else 1.0
    lp.col_cost_ = np.concatenate([model.pair_cost, model.payment]) / unit
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.ones(lp.num_col_)
    lp.row_lower_ = np.concatenate([np.ones(n_jobs), np.full(n_workers, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([np.ones(n_jobs), model.free])
    # column-wise matrix: a pair column has a 1 in its job's row and its GPUs in its worker's row
    starts = np.concatenate([np.arange(0, 2 * n_pairs + 1, 2), 2 * n_pairs + 1 + np.arange(n_jobs)])
    index = np.empty(2 * n_pairs + n_jobs, dtype=np.int32)
    value = np.empty(2 * n_pairs + n_jobs)
    index[0 : 2 * n_pairs : 2] = model.pair_job
    index[1 : 2 * n_pairs : 2] = n_jobs + model.pair_worker
    value[0 : 2 * n_pairs : 2] = 1.0
    value[1 : 2 * n_pairs : 2] = model.gpus[model.pair_job]
    index[2 * n_pairs :] = np.arange(n_jobs)
    value[2 * n_pairs :] = 1.0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts.astype(np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    if not relax:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n_pairs + [highspy.HighsVarType.kContinuous] * n_jobs
    h = _new_highs()
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(gap))
    h.passModel(lp)
    if start:  # the greedy allocation as a starting incumbent
        initial = np.zeros(lp.num_col_)
        initial[n_pairs:] = 1.0
        for p, j in start.items():
            initial[p] = 1.0
            initial[n_pairs + j] = 0.0
        sol = highspy.HighsSolution()
        sol.col_value = list(initial)
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    info = h.getInfo()
    status = h.modelStatusToString(h.getModelStatus())
    if info.primal_solution_status != 2:  # 2: feasible
        return None, math.inf, -math.inf, status
    solution = h.getSolution()
    values = np.asarray(solution.col_value[:n_pairs])
    if relax and duals is not None:
        duals.append(np.asarray(solution.row_dual) * unit)
    objective_value = float(info.objective_function_value) * unit
    # an LP relaxation's optimum is itself a lower bound on the integer program
    bound = objective_value if relax and status == "Optimal" else float(info.mip_dual_bound) * unit
    return values, objective_value, bound, status


#: Above this many fitting pairs `allocate` takes the large-instance path (`_large`): a short Lagrangian method, then
#: the LP relaxation by column generation over every pair with a min-cost flow solver (`flow`), then its rounding.
COLUMN_GENERATION_FROM = 20_000
_PRIMAL_EVERY = 0.15  # the Lagrangian method's greedy at its prices, every this fraction of its time (and at the end)
_WARM_START = 0.2  # the large path's Lagrangian warm start, as a fraction of the time limit
_WARM_START_MAX_S = 1.0  # and at most this long (the flow does better with the rest)
_LP_UNTIL = 0.8  # its column generation starts no round that would end much past this fraction of the time limit
_DONE_BY = 0.9  # and its rounding by this one (the rest: checking the allocation and its cost in Python)


def dense_lagrangian_bound(d: _Dense, gpu_prices: Any) -> float:
    """A lower bound on the integer optimum for any non-negative price per GPU on each worker: relax the GPU
    budgets into the objective, then each job alone takes its cheapest option (open, or a worker at cost + GPUs ×
    price). Valid whatever the prices (weak duality); equal to the LP optimum at the LP's optimal duals."""
    import numpy as np

    price = np.maximum(np.asarray(gpu_prices, dtype=float), 0.0)
    best = np.minimum(d.payment, (d.cost + d.gpus[:, None] * price[None, :]).min(axis=1))
    return float(best.sum() - (price * d.free).sum())


def _worker_features(workers: Sequence[WorkerSupply]) -> tuple[Any, Any]:
    """Workers grouped by GPU memory; per worker 1, price per unit of work and speed, the last two centred in the group."""
    import numpy as np

    _, groups = np.unique(np.array([w.mem_gib for w in workers]), return_inverse=True)
    count = np.bincount(groups)
    columns = [np.ones(len(workers))]
    for x in (np.array([w.price_per_gpu_hour / w.speed for w in workers]), np.array([w.speed for w in workers])):
        columns.append(x - (np.bincount(groups, weights=x) / count)[groups])
    return np.stack(columns, axis=1), groups


def _lagrangian(d: _Dense, start: Any, features: Any, groups: Any, deadline: float, gap: float,
                notes: list[str]) -> tuple[Any, float, Any]:
    """Lagrangian relaxation of the worker GPU budgets, for instances too large for the LP in time.

    For GPU prices λ ≥ 0, each job alone takes min(payment, min_w cost + GPUs × λ_w); the sum less Σ λ_w × free GPUs
    is a lower bound (`dense_lagrangian_bound`). The prices are improved by Polyak subgradient steps (target: the best
    allocation's cost), first in a few dimensions, λ_w = max(0, θ_group(w) · features_w) with workers grouped
    (`groups`, e.g. by GPU memory) and `features` (one row per worker: 1 and centred price per unit of work and
    speed), which moves all workers of a kind together, then in every λ_w. Every few steps the allocation is
    greedy at the prices (each pair's cost raised by its GPUs × λ_w); the best, at its true cost, is kept.
    Returns (worker position per job, proven lower bound, prices)."""
    import numpy as np

    n, m = d.cost.shape
    c32 = d.cost.astype(np.float32)
    g32 = d.gpus.astype(np.float32)
    p32 = d.payment.astype(np.float32)
    rows = np.arange(n)
    ones = bool((d.gpus == 1).all())
    a = np.empty_like(c32)  # the matrices of every step, allocated once (a fresh one per step costs page faults)
    priced_cost = np.empty_like(d.cost)
    best, ub = start, _cost_of(d, start)
    k = int(groups.max()) + 1
    f = features.shape[1]
    theta = np.zeros(k * f)
    idx = groups[:, None] * f + np.arange(f)[None, :]  # each worker's parameters in theta

    def reduced(th: Any) -> Any:
        return np.maximum(0.0, (th[idx] * features).sum(axis=1))

    def primal(best: Any, ub: float) -> tuple[Any, float]:
        """Greedy with each pair's cost raised by its GPUs at the best prices so far, if it costs less."""
        np.multiply(d.gpus[:, None], best_lam[None, :], out=priced_cost)
        np.add(priced_cost, d.cost, out=priced_cost)
        priced = _greedy_positions(_Dense(d.gpus, d.payment, d.job_ids, d.free, priced_cost))
        cost = _cost_of(d, priced)
        return (priced, cost) if cost < ub else (best, ub)

    lam = reduced(theta)
    lb, best_lam = -math.inf, lam.copy()
    step, stall, it, full, direction = 0.5, 0, 0, False, None
    t0 = time.perf_counter()
    switch = t0 + 0.6 * (deadline - t0)
    next_primal = t0 + _PRIMAL_EVERY * (deadline - t0)
    while time.perf_counter() < deadline:
        it += 1
        if ones:  # every job 1 GPU: one pass over the matrix, into the same buffer each step
            np.add(c32, lam.astype(np.float32)[None, :], out=a)
        else:
            np.multiply(g32[:, None], lam.astype(np.float32)[None, :], out=a)
            a += c32
        w = a.argmin(axis=1)
        v = a[rows, w]
        place = v < p32
        value = float(np.where(place, v, p32).astype(np.float64).sum() - (lam * d.free).sum())
        if value > lb:
            lb, best_lam, stall = value, lam.copy(), 0
        else:
            stall += 1
            if stall >= 10:
                step, stall = step * 0.7, 0
        s = np.bincount(w[place], weights=d.gpus[place], minlength=m) - d.free
        if (it < 20 and it % 5 == 0) or time.perf_counter() >= next_primal:
            best, ub = primal(best, ub)
            next_primal = time.perf_counter() + _PRIMAL_EVERY * (deadline - t0)
            if ub - lb <= gap * abs(ub):
                break
        if not full and (time.perf_counter() > switch or step < 0.02):
            full, lam, step, stall, direction = True, best_lam.copy(), 0.25, 0, None
            continue
        if full:
            s = np.where((lam <= 0) & (s < 0), 0.0, s)
            direction = s if direction is None else s + 0.3 * direction
            norm = float(direction @ direction)
            if norm == 0:
                break
            lam = np.maximum(0.0, lam + step * (ub - value) / norm * direction)
        else:
            grad = np.bincount(idx.ravel(), weights=(np.where((lam > 0) | (s > 0), s, 0.0)[:, None] * features).ravel(),
                               minlength=k * f)
            norm = float(grad @ grad)
            if norm == 0:
                break
            theta = theta + step * (ub - value) / norm * grad
            lam = reduced(theta)
    if ub - lb > gap * abs(ub):
        best, ub = primal(best, ub)  # at the last best prices
    # the bound in float64 (the steps' float32 values only steered), as `dense_lagrangian_bound` computes it
    np.multiply(d.gpus[:, None], best_lam[None, :], out=priced_cost)
    priced_cost += d.cost
    bound = float(np.minimum(d.payment, priced_cost.min(axis=1)).sum() - (best_lam * d.free).sum())
    notes.append(f"lagrangian steps {it}")
    return best, bound, best_lam


def _large(d: _Dense, fallback: Any, workers: Sequence[WorkerSupply], start: float, time_limit_s: float, gap: float,
           notes: list[str]) -> tuple[Any, float, Any]:
    """The large-instance path. Returns (worker position per job, proven lower bound, GPU prices).

    1. A short Lagrangian method (`_lagrangian`, _WARM_START of the time) for starting prices and an allocation.
    2. The LP relaxation by column generation with a min-cost flow solver (`flow.solve`) until _LP_UNTIL of the time
       limit: exact when every job needs one GPU (the flow is then an integer allocation), a proven bound always.
    3. The allocation: the best integral flow seen (jobs a flow splits over workers completed greedily), greedy at the
       final prices, and a small MIP over the jobs the flow split, until _DONE_BY of the time limit.
    If the flow solver fails, the Lagrangian method takes the rest of the time."""
    import numpy as np

    from llmos_chain.market import flow

    features = _worker_features(workers)
    warm, bound, prices = _lagrangian(d, fallback, *features, start + min(_WARM_START * time_limit_s, _WARM_START_MAX_S), gap,
                                      notes)
    best, best_cost = min((fallback, _cost_of(d, fallback)), (warm, _cost_of(d, warm)), key=lambda c: c[1])
    if best_cost - bound <= gap * abs(best_cost):
        return best, bound, prices
    deadline = start + _DONE_BY * time_limit_s
    lp = flow.solve(d, prices, [fallback, warm], start + _LP_UNTIL * time_limit_s, gap, notes)
    if lp is None:
        choice, more, more_prices = _lagrangian(d, best, *features, deadline, gap, notes)
        return (choice if _cost_of(d, choice) < best_cost else best), max(bound, more), (more_prices if more > bound else prices)
    if lp.bound > bound:
        bound, prices = lp.bound, lp.prices
    if lp.incumbent is not None and lp.incumbent_cost < best_cost:
        best, best_cost = lp.incumbent, lp.incumbent_cost
    if best_cost - bound <= gap * abs(best_cost) or time.perf_counter() >= deadline:
        return best, bound, prices
    # greedy with each pair's cost raised by its GPUs at the prices: a job that could run elsewhere leaves the GPUs the
    # LP values more to the jobs that need them
    priced = _greedy_positions(_Dense(d.gpus, d.payment, d.job_ids, d.free, d.cost + d.gpus[:, None] * lp.prices[None, :]))
    if _cost_of(d, priced) < best_cost:
        best, best_cost = priced, _cost_of(d, priced)
    # the jobs the flow split over workers: a small MIP over their pairs in the LP and the GPUs the whole jobs left
    n, m = d.cost.shape
    fixed, split = flow.integral_choice(n, lp.arc_job, lp.arc_worker, lp.arc_flow, d.gpus)
    remaining = deadline - time.perf_counter()
    if remaining > 0.05 and split.any():
        residual = d.free.copy()
        np.subtract.at(residual, fixed[fixed >= 0], d.gpus[fixed >= 0])
        completed = _greedy_positions(d, fixed)
        loose = split | ((fixed < 0) & (completed >= 0))
        cj, cw = lp.arc_job, lp.arc_worker
        sel = loose[cj] & (residual[cw] >= d.gpus[cj])
        extra = (completed >= 0) & loose  # the greedy completion's pairs, as a starting solution
        ej, ew = np.flatnonzero(extra), completed[extra]
        key = np.unique(np.concatenate([cj[sel] * m + cw[sel], ej * m + ew]))
        pj, pw = key // m, key % m
        choice = _sub_mip(d, pj, pw, residual, ej * m + ew, remaining, notes) if len(pj) else None
        if choice is not None:
            candidate = fixed.copy()
            candidate[pj[choice]] = pw[choice]
            if _cost_of(d, candidate) < best_cost:
                best = candidate
        notes.append(f"sub-MIP over {int(loose.sum())} jobs")
    return best, bound, prices


def _sub_mip(d: _Dense, pj: Any, pw: Any, residual: Any, start_keys: Any, time_limit_s: float, notes: list[str]) -> Any:
    """max profit over the given pairs, each job at most once, within `residual` GPUs; returns a mask of chosen pairs."""
    import highspy
    import numpy as np

    m = d.cost.shape[1]
    jobs, jrow = np.unique(pj, return_inverse=True)
    workers, wrow = np.unique(pw, return_inverse=True)
    nj, nw, c = len(jobs), len(workers), len(pj)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = c, nj + nw
    lp.col_cost_ = d.cost[pj, pw] - d.payment[pj]
    lp.col_lower_, lp.col_upper_ = np.zeros(c), np.ones(c)
    lp.row_lower_ = np.full(nj + nw, -highspy.kHighsInf)
    lp.row_upper_ = np.concatenate([np.ones(nj), residual[workers]])
    index = np.empty(2 * c, dtype=np.int32)
    index[0::2], index[1::2] = jrow, nj + wrow
    value = np.empty(2 * c)
    value[0::2], value[1::2] = 1.0, d.gpus[pj]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * c + 1, 2, dtype=np.int32)
    lp.a_matrix_.index_, lp.a_matrix_.value_ = index, value
    lp.integrality_ = [highspy.HighsVarType.kInteger] * c
    h = _new_highs()
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", 1e-4)
    h.passModel(lp)
    start = np.isin(pj * m + pw, start_keys).astype(float)
    sol = highspy.HighsSolution()
    sol.col_value = list(start)
    sol.value_valid = True
    h.setSolution(sol)
    h.run()
    if h.getInfo().primal_solution_status != 2:
        notes.append("the sub-MIP found no solution")
        return None
    return np.asarray(h.getSolution().col_value) > 0.5


def allocate(
    jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply], time_limit_s: float = 2.0, gap: float = 0.005,
    solver: str = "highs",
) -> Allocation:
    """The MILP allocation (building the model counts in `solve_s`); greedy when the solver finds nothing better.

    Up to COLUMN_GENERATION_FROM fitting pairs: the full LP relaxation, its integral part completed greedily, then
    branch and bound (HiGHS) from the best incumbent. Above: a Lagrangian warm start, then column generation over every
    pair with a min-cost flow solver, then its rounding (see `_large`).
    The bound is always proven: an LP optimum, HiGHS's MIP dual bound, or a Lagrangian value."""
    import numpy as np

    t = time.perf_counter()
    d = _dense(jobs, workers)
    fallback_choice = _greedy_positions(d)
    fallback = Allocation(_to_assignments(jobs, workers, fallback_choice), _cost_of(d, fallback_choice), -math.inf, "greedy", 0.0)
    n_pairs = d.n_pairs
    if n_pairs == 0:
        fallback.cost = objective(jobs, workers, fallback.assignments)
        fallback.solve_s = time.perf_counter() - t
        return fallback
    job_pos = {j.job_id: i for i, j in enumerate(jobs)}
    worker_pos = {w.worker: i for i, w in enumerate(workers)}
    notes: list[str] = []
    best, bound = fallback.assignments, -math.inf
    prices = None
    remaining = max(0.05, time_limit_s - (time.perf_counter() - t))
    if solver == "highs" and n_pairs > COLUMN_GENERATION_FROM:
        choice, bound, prices = _large(d, fallback_choice, workers, t, time_limit_s, gap, notes)
        if _cost_of(d, choice) < _cost_of(d, fallback_choice):
            best = _to_assignments(jobs, workers, choice)
    elif solver == "highs":
        model = _build(d)
        # 1. the LP relaxation: a proven bound, and mostly integral; complete its integral part greedily
        duals: list[Any] = []
        values, _, bound, status = _solve_highs(model, len(jobs), len(workers), {}, remaining, gap, relax=True, duals=duals)
        if duals:
            prices = np.maximum(-duals[0][len(jobs):], 0.0)
        if values is not None:
            fixed = np.full(len(jobs), -1, dtype=np.int64)
            whole = values > 1 - 1e-6
            fixed[model.pair_job[whole]] = model.pair_worker[whole]
            rounded = _greedy_positions(d, fixed)
            if _cost_of(d, rounded) < _cost_of(d, fallback_choice):
                best = _to_assignments(jobs, workers, rounded)
        else:
            notes.append(f"the LP relaxation did not solve ({status})")
        # 2. branch and bound from the best incumbent while time and the gap allow
        cost = objective(jobs, workers, best)
        remaining = time_limit_s - (time.perf_counter() - t)
        if remaining > 0.2 and cost - bound > gap * abs(cost):
            pair_of = {(int(a), int(b)): p for p, (a, b) in enumerate(zip(model.pair_job, model.pair_worker, strict=True))}
            start = {pair_of[(job_pos[jid], worker_pos[name])]: job_pos[jid] for jid, name in best.items()}
            values, _, mip_bound, status = _solve_highs(model, len(jobs), len(workers), start, remaining, gap)
            bound = max(bound, mip_bound)
            if values is not None:
                mip = {jobs[int(model.pair_job[p])].job_id: workers[int(model.pair_worker[p])].worker for p in range(n_pairs) if values[p] > 0.5}
                if objective(jobs, workers, mip) < cost:
                    best = mip
    else:
        model = _build(d)
        values = _solve_cbc(model, len(jobs), remaining, gap)
        if values is None:
            notes.append("CBC found no solution in time; using the greedy allocation")
        else:
            mip = {jobs[int(model.pair_job[p])].job_id: workers[int(model.pair_worker[p])].worker for p in range(n_pairs) if values[p] > 0.5}
            if objective(jobs, workers, mip) < objective(jobs, workers, best):
                best = mip
    check(jobs, workers, best)
    cost = objective(jobs, workers, best)
    bound = min(cost, bound)
    if best == fallback.assignments and bound == -math.inf:
        fallback.cost = cost
        fallback.solve_s, fallback.notes, fallback.variables = time.perf_counter() - t, notes, n_pairs
        fallback.prices = prices
        return fallback
    label = "optimal" if cost - bound <= (gap + 1e-12) * abs(cost) else "feasible"
    return Allocation(best, cost, bound, label, time.perf_counter() - t, n_pairs, notes, prices)


def _solve_cbc(model: _Model, n_jobs: int, time_limit_s: float, gap: float) -> Any:
    """The fallback solver: the same program through pulp and CBC."""
    import numpy as np
    import pulp

    prob = pulp.LpProblem("allocation", pulp.LpMinimize)
    x = [pulp.LpVariable(f"x{p}", cat="Binary") for p in range(len(model.pair_job))]
    open_ = [pulp.LpVariable(f"o{j}", lowBound=0, upBound=1) for j in range(n_jobs)]
    prob += pulp.LpAffineExpression(list(zip(x, model.pair_cost.tolist(), strict=True)) + list(zip(open_, model.payment.tolist(), strict=True)))
    by_job: list[list[Any]] = [[] for _ in range(n_jobs)]
    by_worker: dict[int, list[Any]] = {}
    for p, (j, w) in enumerate(zip(model.pair_job.tolist(), model.pair_worker.tolist(), strict=True)):
        by_job[j].append((x[p], 1))
        by_worker.setdefault(w, []).append((x[p], float(model.gpus[j])))
    for j in range(n_jobs):
        prob += pulp.LpAffineExpression(by_job[j] + [(open_[j], 1)]) == 1
    for w, items in by_worker.items():
        prob += pulp.LpAffineExpression(items) <= float(model.free[w])
    prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=max(1, math.ceil(time_limit_s)), gapRel=gap))
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None
    return np.array([v.value() or 0.0 for v in x])
