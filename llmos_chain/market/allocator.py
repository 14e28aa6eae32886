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
branch and bound; above COLUMN_GENERATION_FROM fitting pairs, column generation over every pair (see `_large`); above
LAGRANGIAN_FROM, when the first restricted LP is not solved in time, a Lagrangian method (see `_lagrangian`).
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
    lp.col_cost_ = np.concatenate([model.pair_cost, model.payment])
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
        duals.append(np.asarray(solution.row_dual))
    objective_value = float(info.objective_function_value)
    # an LP relaxation's optimum is itself a lower bound on the integer program
    bound = objective_value if relax and status == "Optimal" else float(info.mip_dual_bound)
    return values, objective_value, bound, status


#: Above this many fitting pairs `allocate` takes the large-instance path: a restricted LP, priced against every
#: pair (column generation), a Lagrangian bound, then a sub-MIP over the jobs the LP left fractional.
COLUMN_GENERATION_FROM = 20_000
#: Above this many fitting pairs (10,000 jobs × 1,000 workers has 8–10 million), column generation gives up when its first
#: restricted LP is not solved in time, and the Lagrangian method (`_lagrangian`) takes over.
LAGRANGIAN_FROM = 4_000_000
_PRIMAL_EVERY = 0.15  # the Lagrangian method's greedy at its prices, every this fraction of its time (and at the end)
_FIRST_LP = 0.4  # there, the first restricted LP's deadline (a fraction of the time limit); past it, the Lagrangian method
_INITIAL_PER_JOB = 1  # each job's cheapest fitting workers in the first restricted LP
_INITIAL_PER_WORKER = 48  # each worker's most profitable jobs per GPU in it
_ENTERING_PER_JOB = 2  # per round: each job's pairs of most negative reduced cost
_ENTERING_MOST = 10_000  # and the most negative reduced costs per GPU over all pairs


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


def _large(d: _Dense, fallback: Any, lp_deadline: float, deadline: float, gap: float,
           notes: list[str], first_lp_deadline: float = math.inf) -> tuple[Any, float, dict[str, Any]]:
    """Column generation for the LP relaxation until `lp_deadline`, then its rounding and a sub-MIP until `deadline`.

    Each round prices every pair against the restricted LP's duals; the worker duals are GPU prices, so each round
    also gives a Lagrangian lower bound (`dense_lagrangian_bound`, valid for any prices). It stops once the greedy
    cost is within `gap` of that bound, or when no pair can enter (the bound is then the LP optimum).
    If the first restricted LP is not solved by `first_lp_deadline`, it gives up at once (statistics
    `lp_gave_up`): the LP cannot finish in time on this instance.
    Returns (worker position per job, proven lower bound, statistics)."""
    import highspy
    import numpy as np

    n, m = d.cost.shape
    inf = highspy.kHighsInf
    finite = np.isfinite(d.cost)
    # the first columns: each job's cheapest workers, each worker's most profitable jobs per GPU (GPUs are scarce
    # where the allocation matters, and the LP's choice is which jobs the workers take), and the greedy solution
    present = np.zeros((n, m), dtype=bool)
    k = min(_INITIAL_PER_JOB, m)
    if k:
        near = np.argpartition(d.cost, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (n, 1))
        present[np.repeat(np.arange(n), near.shape[1]), near.ravel()] = True
    top = min(_INITIAL_PER_WORKER, n)
    step = 64
    for a in range(0, m, step):  # in blocks of workers, transposed: each worker's jobs by minus profit per GPU
        per_gpu = ((d.cost[:, a : a + step] - d.payment[:, None]) / d.gpus[:, None]).T.copy()
        best_jobs = np.argpartition(per_gpu, top - 1, axis=1)[:, :top] if top < n else np.tile(np.arange(n), (per_gpu.shape[0], 1))
        present[best_jobs.ravel(), np.repeat(np.arange(a, a + per_gpu.shape[0]), best_jobs.shape[1])] = True
    on = fallback >= 0
    present[np.flatnonzero(on), fallback[on]] = True
    present &= finite

    col_job: list[Any] = []
    col_worker: list[Any] = []

    def matrix(jj: Any, ww: Any) -> tuple[Any, Any, Any]:
        c = len(jj)
        index = np.empty(2 * c, dtype=np.int32)
        index[0::2], index[1::2] = jj, n + ww
        value = np.empty(2 * c)
        value[0::2], value[1::2] = 1.0, d.gpus[jj]
        col_job.append(jj)
        col_worker.append(ww)
        return np.arange(0, 2 * c, 2, dtype=np.int32), index, value

    # rows: one equality per job (assigned somewhere or left open), one GPU budget per worker; columns: `open` per
    # job, then the pairs
    jj, ww = np.nonzero(present)
    starts, index, value = matrix(jj, ww)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n + len(jj), n + m
    lp.col_cost_ = np.concatenate([d.payment, d.cost[jj, ww]])
    lp.col_lower_, lp.col_upper_ = np.zeros(lp.num_col_), np.ones(lp.num_col_)
    lp.row_lower_ = np.concatenate([np.ones(n), np.full(m, -inf)])
    lp.row_upper_ = np.concatenate([np.ones(n), d.free])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([np.arange(n), n + starts, [n + 2 * len(jj)]]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate([np.arange(n, dtype=np.int32), index])
    lp.a_matrix_.value_ = np.concatenate([np.ones(n), value])
    h = _new_highs()
    h.setOptionValue("simplex_strategy", 1)  # dual simplex from scratch
    h.passModel(lp)

    def add(jj: Any, ww: Any) -> None:
        starts, index, value = matrix(jj, ww)
        h.addCols(len(jj), d.cost[jj, ww], np.zeros(len(jj)), np.ones(len(jj)), len(index), starts, index, value)

    bound, rounds, converged = -math.inf, 0, False
    values = None
    last_prices = None
    incumbent = _cost_of(d, fallback)
    while time.perf_counter() < lp_deadline:
        # HiGHS's time limit counts the instance's total run time over all its runs
        until = lp_deadline if rounds else min(lp_deadline, first_lp_deadline)
        if not rounds and time.perf_counter() >= first_lp_deadline:
            return fallback, bound, {"lp_rounds": 0, "lp_gave_up": True, "prices": None}
        h.setOptionValue("time_limit", h.getRunTime() + max(0.01, until - time.perf_counter()))
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal":
            notes.append(f"restricted LP: {status}")
            if not rounds and until < lp_deadline:
                return fallback, bound, {"lp_rounds": 0, "lp_gave_up": True, "prices": None}
            break
        rounds += 1
        sol = h.getSolution()
        values = np.asarray(sol.col_value)[n:]
        open_value = np.asarray(sol.col_value)[:n]
        duals = np.asarray(sol.row_dual)
        u, lam = duals[:n], np.maximum(-duals[n:], 0.0)
        last_prices = lam
        adjusted = d.cost + d.gpus[:, None] * lam[None, :]
        bound = max(bound, float(np.minimum(d.payment, adjusted.min(axis=1)).sum() - (lam * d.free).sum()))
        if incumbent - bound <= gap * abs(incumbent):
            break
        adjusted -= u[:, None]  # the reduced cost of every pair
        adjusted[present] = np.inf
        rows = np.flatnonzero((adjusted < -1e-7).any(axis=1))
        if len(rows) == 0:
            converged = True
            break
        sub = adjusted[rows]
        e = min(_ENTERING_PER_JOB, m)
        pick = np.argpartition(sub, e - 1, axis=1)[:, :e] if e < m else np.tile(np.arange(m), (len(rows), 1))
        jj = np.repeat(rows, pick.shape[1])
        ww = pick.ravel()
        keep = sub[np.repeat(np.arange(len(rows)), pick.shape[1]), ww] < -1e-7
        jj, ww = jj[keep], ww[keep]
        # and the most negative reduced costs per GPU over all pairs
        sub /= d.gpus[rows, None]
        flat = sub.ravel()
        many = min(_ENTERING_MOST, flat.size - 1)
        most = np.argpartition(flat, many)[:many]
        most = most[flat[most] < -1e-7]
        jj = np.concatenate([jj, rows[most // m]])
        ww = np.concatenate([ww, most % m])
        key = np.unique(jj * m + ww)
        jj, ww = key // m, key % m
        present[jj, ww] = True
        add(jj, ww)  # HiGHS re-solves warm from the last basis
    stats: dict[str, Any] = {"lp_rounds": rounds, "lp_converged": converged, "columns": int(present.sum()), "prices": last_prices}
    if values is None:
        return fallback, bound, stats
    cj, cw = np.concatenate(col_job)[: len(values)], np.concatenate(col_worker)[: len(values)]  # the columns last solved
    x = values
    fixed = np.full(n, -1, dtype=np.int64)
    whole = x > 1 - 1e-6
    fixed[cj[whole]] = cw[whole]
    rounded = _greedy_positions(d, fixed)
    best = rounded if _cost_of(d, rounded) < _cost_of(d, fallback) else fallback
    if last_prices is not None and time.perf_counter() < deadline:
        # greedy again, each pair's cost raised by its GPUs at the worker's dual price: a job that could run elsewhere
        # leaves the GPUs the LP values more to the jobs that need them
        priced = _greedy_positions(_Dense(d.gpus, d.payment, d.job_ids, d.free, d.cost + d.gpus[:, None] * last_prices[None, :]))
        if _cost_of(d, priced) < _cost_of(d, best):
            best = priced
    # the jobs the LP did not assign whole: a small MIP over their LP columns and the GPUs the fixed jobs left
    remaining = deadline - time.perf_counter()
    # (jobs the LP left open whole are not in it: the greedy completion gave them what GPUs were left)
    loose = np.flatnonzero((fixed < 0) & ((open_value < 1 - 1e-6) | (rounded >= 0)))
    if remaining > 0.05 and len(loose):
        residual = d.free.copy()
        np.subtract.at(residual, fixed[fixed >= 0], d.gpus[fixed >= 0])
        in_loose = np.zeros(n, dtype=bool)
        in_loose[loose] = True
        sel = in_loose[cj] & (residual[cw] >= d.gpus[cj])
        pj, pw = cj[sel], cw[sel]
        extra = (rounded >= 0) & in_loose  # the greedy completion's pairs, as a starting solution
        ej, ew = np.flatnonzero(extra), rounded[extra]
        key = np.unique(np.concatenate([pj * m + pw, ej * m + ew]))
        pj, pw = key // m, key % m
        choice = _sub_mip(d, pj, pw, residual, (ej * m + ew), remaining, notes) if len(pj) else None
        if choice is not None:
            candidate = fixed.copy()
            candidate[pj[choice]] = pw[choice]
            if _cost_of(d, candidate) < _cost_of(d, best):
                best = candidate
        stats["sub_mip_jobs"] = len(loose)
    return best, bound, stats


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
    branch and bound (HiGHS) from the best incumbent. Above: column generation over every pair (see `_large`), and
    above LAGRANGIAN_FROM, if its first LP is not solved by _FIRST_LP of the time limit, the Lagrangian method.
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
        # leave room for the final check and the objective in Python; above LAGRANGIAN_FROM fitting pairs the first
        # restricted LP gets until _FIRST_LP of the time limit, and if it is not solved by then, the Lagrangian method
        # (see `_lagrangian`) takes the rest of the time
        first = t + _FIRST_LP * time_limit_s if n_pairs > LAGRANGIAN_FROM else math.inf
        choice, bound, stats = _large(d, fallback_choice, t + 0.75 * time_limit_s, t + 0.9 * time_limit_s, gap, notes, first)
        prices = stats.pop("prices", None)
        notes.append(", ".join(f"{k} {v}" for k, v in stats.items()))
        if stats.get("lp_gave_up"):
            choice, bound, prices = _lagrangian(d, fallback_choice, *_worker_features(workers), t + 0.85 * time_limit_s, gap, notes)
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
    label = "optimal" if cost - bound <= gap * abs(cost) + 1e-9 else "feasible"
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
