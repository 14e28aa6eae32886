"""Allocate a batch of open jobs to this provider's workers with a mixed-integer program.

Variables x[j, w] ∈ {0, 1} exist only for pairs that fit: enough GPU memory and GPUs, the worker's
price × GPUs × estimated runtime within the job's payment, and the estimated runtime before the
deadline. Each job goes to at most one worker; the GPUs a worker gives to the batch stay within its
free GPUs.

Objective (minimised): Σ cost[j, w]·x[j, w] + Σ payment[j]·(1 − Σ_w x[j, w]) — running a job costs the
provider its price for the time, and leaving one open forgoes its payment. Equivalently, the most
profit (payment − cost) over the jobs scheduled. The seed document's form (spread a demand D over nodes
of capacity R_i at least cost) is this program with one job split across workers.

Solved by HiGHS (through pulp and highspy) with a time limit and a relative gap; CBC is the fallback.
`sol_status` is read, never assumed: without a feasible solution the greedy allocation is used, and
any solution is checked against the constraints before it is returned.
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
           model: "_Model | None" = None) -> Allocation:
    """Most profit per GPU first, each to the fitting worker with spare GPUs that costs least.

    `fixed` assignments are kept and their GPUs taken first (how an LP solution's integral part is completed).
    """
    import numpy as np

    t = time.perf_counter()
    model = model or _build(jobs, workers)
    free = model.free.copy()
    worker_pos = {w.worker: i for i, w in enumerate(workers)}
    assignments: dict[int, str] = dict(fixed or {})
    taken = np.zeros(len(jobs), dtype=bool)
    for i, job in enumerate(jobs):
        if job.job_id in assignments:
            free[worker_pos[assignments[job.job_id]]] -= job.gpus
            taken[i] = True
    order = np.lexsort((model.pair_cost, model.pair_job))  # each job's fitting workers, cheapest first
    pj, pw, pc = model.pair_job[order], model.pair_worker[order], model.pair_cost[order]
    starts = np.searchsorted(pj, np.arange(len(jobs) + 1))
    has = starts[1:] > starts[:-1]
    best_profit = np.full(len(jobs), -np.inf)
    best_profit[has] = model.payment[has] - pc[starts[:-1][has]]  # the cheapest pair is the most profitable
    density = best_profit / model.gpus
    for i in sorted(np.flatnonzero(has & ~taken).tolist(), key=lambda k: (-density[k], jobs[k].job_id)):
        need = model.gpus[i]
        for k in range(starts[i], starts[i + 1]):
            w = pw[k]
            if free[w] >= need:
                free[w] -= need
                assignments[jobs[i].job_id] = workers[w].worker
                break
    cost = objective(jobs, workers, assignments)
    return Allocation(assignments, cost, -math.inf, "greedy", time.perf_counter() - t)


@dataclass
class _Model:
    """The program as arrays: one column per fitting (job, worker) pair, then one `open` column per job."""

    pair_job: "Any"  # numpy int arrays / float arrays
    pair_worker: "Any"
    pair_cost: "Any"
    gpus: "Any"
    payment: "Any"
    free: "Any"


def _build(jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply]) -> _Model:
    import numpy as np

    gpus = np.array([j.gpus for j in jobs], dtype=np.float64)
    mem = np.array([j.mem_gib for j in jobs], dtype=np.float64)
    payment = np.array([j.payment for j in jobs], dtype=np.float64)
    deadline_h = np.array([j.deadline_s for j in jobs], dtype=np.float64) / 3600
    work = np.array([j.work for j in jobs], dtype=np.float64)
    w_free = np.array([w.free_gpus for w in workers], dtype=np.float64)
    w_mem = np.array([w.mem_gib for w in workers], dtype=np.float64)
    w_price = np.array([w.price_per_gpu_hour for w in workers], dtype=np.float64)
    w_speed = np.array([w.speed for w in workers], dtype=np.float64)
    runtime = work[:, None] / w_speed[None, :]
    cost = w_price[None, :] * gpus[:, None] * runtime
    ok = (w_mem[None, :] >= mem[:, None]) & (w_free[None, :] >= gpus[:, None]) & (cost <= payment[:, None]) & (runtime <= deadline_h[:, None])
    jj, ww = np.nonzero(ok)
    return _Model(jj, ww, cost[jj, ww], gpus, payment, w_free)


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


def _subset(model: _Model, columns: Any) -> _Model:
    return _Model(model.pair_job[columns], model.pair_worker[columns], model.pair_cost[columns], model.gpus, model.payment, model.free)


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


#: Above this many fitting pairs the LP starts from each job's cheapest workers and prices the rest in.
COLUMN_GENERATION_FROM = 200_000
_INITIAL_PER_JOB = 12
_ENTERING_PER_JOB = 3


def _columns(model: _Model, n_jobs: int, columns: Any) -> tuple[Any, Any, Any]:
    """Column-wise (starts, row indices, values) for the given pair columns."""
    import numpy as np

    k = len(columns)
    starts = np.arange(0, 2 * k, 2, dtype=np.int32)
    index = np.empty(2 * k, dtype=np.int32)
    value = np.empty(2 * k)
    index[0::2] = model.pair_job[columns]
    index[1::2] = n_jobs + model.pair_worker[columns]
    value[0::2] = 1.0
    value[1::2] = model.gpus[model.pair_job[columns]]
    return starts, index, value


def lagrangian_bound(model: _Model, n_jobs: int, gpu_prices: Any) -> float:
    """A lower bound on the allocation's optimum for any non-negative price per GPU on each worker:
    relax the workers' GPU budgets into the objective, then each job alone picks its cheapest option
    (open, or a worker at cost + GPUs × price). Valid whatever the prices, tight at the LP's duals."""
    import numpy as np

    price = np.maximum(gpu_prices, 0.0)
    best = model.payment.copy()
    np.minimum.at(best, model.pair_job, model.pair_cost + model.gpus[model.pair_job] * price[model.pair_worker])
    return float(best.sum() - (price * model.free).sum())


def subgradient_bound(model: _Model, n_jobs: int, n_workers: int, prices: Any, upper: float, deadline: float,
                      iterations: int = 300) -> float:
    """Raise the Lagrangian bound by subgradient steps on the per-GPU prices (Polyak steps towards `upper`)."""
    import numpy as np

    price = np.maximum(np.asarray(prices, dtype=float), 0.0)
    best = -math.inf
    theta = 1.0
    gpus = model.gpus[model.pair_job]
    for _ in range(iterations):
        if time.perf_counter() > deadline:
            break
        reduced = model.pair_cost + gpus * price[model.pair_worker]
        choice = model.payment.copy()
        np.minimum.at(choice, model.pair_job, reduced)
        value = float(choice.sum() - (price * model.free).sum())
        if value > best + 1e-9:
            best = value
        else:
            theta *= 0.95
        # each job's chosen worker (if any) uses its GPUs there: the subgradient is use minus budget
        chosen = np.isclose(reduced, choice[model.pair_job]) & (reduced < model.payment[model.pair_job])
        use = np.zeros(n_workers)
        np.add.at(use, model.pair_worker[chosen], gpus[chosen])
        g = use - model.free
        norm = float((g * g).sum())
        if norm == 0:
            break
        price = np.maximum(0.0, price + theta * (upper - value) / norm * g)
    return best


def _lp_by_column_generation(model: _Model, n_jobs: int, n_workers: int, deadline: float, seed_pairs: Any,
                             incumbent: float = math.inf, gap: float = 0.0, prices_out: list[Any] | None = None) -> tuple[Any, float, str]:
    """The full LP relaxation without building all columns: start from each job's cheapest pairs (and the
    greedy solution's), then add the pairs whose reduced cost under the current duals is negative,
    re-solving warm from the previous basis. Each round's worker duals give a valid Lagrangian bound;
    it stops when the incumbent is within `gap` of that bound or no column can enter (the LP optimum).
    Returns (pair values of the last restricted LP, best proven bound, status)."""
    import highspy
    import numpy as np

    order = np.lexsort((model.pair_cost, model.pair_job))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - np.searchsorted(model.pair_job[order], model.pair_job[order])
    active_mask = rank < _INITIAL_PER_JOB
    active_mask[seed_pairs] = True
    active = np.flatnonzero(active_mask)

    h = _new_highs()
    inf = highspy.kHighsInf
    # rows: one equality per job (assigned somewhere or left open), one GPU budget per worker
    h.addRows(n_jobs, np.ones(n_jobs), np.ones(n_jobs), 0, np.zeros(n_jobs + 1, dtype=np.int32), np.array([], dtype=np.int32), np.array([]))
    h.addRows(n_workers, np.full(n_workers, -inf), model.free.astype(float), 0, np.zeros(n_workers + 1, dtype=np.int32),
              np.array([], dtype=np.int32), np.array([]))
    open_starts = np.arange(n_jobs, dtype=np.int32)
    h.addCols(n_jobs, model.payment, np.zeros(n_jobs), np.ones(n_jobs), n_jobs, open_starts, np.arange(n_jobs, dtype=np.int32), np.ones(n_jobs))
    col_of_pair = np.full(len(model.pair_job), -1, dtype=np.int64)

    def add(columns: Any) -> None:
        starts, index, value = _columns(model, n_jobs, columns)
        base = h.getNumCol()
        h.addCols(len(columns), model.pair_cost[columns], np.zeros(len(columns)), np.ones(len(columns)), len(index), starts, index, value)
        col_of_pair[columns] = base + np.arange(len(columns))

    add(active)
    status = "not started"
    best_bound = -math.inf
    values: Any = None
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return values, best_bound, "time limit during column generation"
        h.setOptionValue("time_limit", float(remaining))
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal":
            return values, best_bound, status
        solution = h.getSolution()
        duals = np.asarray(solution.row_dual)
        u, v = duals[:n_jobs], duals[n_jobs:]
        values = np.zeros(len(model.pair_job))
        cols = np.asarray(solution.col_value)
        present = col_of_pair >= 0
        values[present] = cols[col_of_pair[present]]
        best_bound = max(best_bound, lagrangian_bound(model, n_jobs, -v))
        if prices_out is not None:
            prices_out[:] = [-v]
        reduced = model.pair_cost - u[model.pair_job] - model.gpus[model.pair_job] * v[model.pair_worker]
        entering = np.flatnonzero((reduced < -1e-7) & (col_of_pair < 0))
        if len(entering) == 0:
            return values, max(best_bound, float(h.getInfo().objective_function_value)), status
        if incumbent - best_bound <= gap * abs(incumbent):
            return values, best_bound, "gap reached"
        by_job = entering[np.lexsort((reduced[entering], model.pair_job[entering]))]
        jobs_of = model.pair_job[by_job]
        position = np.arange(len(by_job)) - np.searchsorted(jobs_of, jobs_of)
        add(by_job[position < _ENTERING_PER_JOB])


def _pairs_of(model: _Model, jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply], assignments: dict[int, str]) -> Any:
    """Indices of the pair columns an allocation uses."""
    import numpy as np

    job_pos = {j.job_id: i for i, j in enumerate(jobs)}
    worker_pos = {w.worker: i for i, w in enumerate(workers)}
    keys = model.pair_job.astype(np.int64) * len(workers) + model.pair_worker
    wanted = np.array([job_pos[j] * len(workers) + worker_pos[w] for j, w in assignments.items()], dtype=np.int64)
    return np.flatnonzero(np.isin(keys, wanted))


def allocate(
    jobs: Sequence[JobDemand], workers: Sequence[WorkerSupply], time_limit_s: float = 2.0, gap: float = 0.005,
    solver: str = "highs",
) -> Allocation:
    """The MILP allocation (building the model counts in `solve_s`); greedy when the solver finds nothing better."""
    t = time.perf_counter()
    model = _build(jobs, workers)
    fallback = greedy(jobs, workers, model=model)
    n_pairs = len(model.pair_job)
    if n_pairs == 0:
        fallback.solve_s = time.perf_counter() - t
        return fallback
    job_pos = {j.job_id: i for i, j in enumerate(jobs)}
    worker_pos = {w.worker: i for i, w in enumerate(workers)}
    notes: list[str] = []
    best, bound = fallback.assignments, -math.inf
    remaining = max(0.05, time_limit_s - (time.perf_counter() - t))
    if solver == "highs":
        # 1. the LP relaxation: a proven bound, and mostly integral; complete its integral part greedily
        if n_pairs > COLUMN_GENERATION_FROM:
            # column generation for half the budget, then subgradient steps on the GPU prices for a proven bound
            seed = _pairs_of(model, jobs, workers, fallback.assignments)
            prices: list[Any] = []
            values, bound, status = _lp_by_column_generation(model, len(jobs), len(workers), t + time_limit_s / 2, seed,
                                                             fallback.cost, gap, prices)
            import numpy as np

            start_prices = prices[0] if prices else np.zeros(len(workers))
            bound = max(bound, subgradient_bound(model, len(jobs), len(workers), start_prices, fallback.cost, t + 0.95 * time_limit_s))
        else:
            values, _, bound, status = _solve_highs(model, len(jobs), len(workers), {}, remaining, gap, relax=True)
        if values is not None:
            fixed = {jobs[int(model.pair_job[p])].job_id: workers[int(model.pair_worker[p])].worker
                     for p in range(n_pairs) if values[p] > 1 - 1e-6}
            rounded = greedy(jobs, workers, fixed, model=model)
            if rounded.cost < objective(jobs, workers, best):
                best = rounded.assignments
        else:
            notes.append(f"the LP relaxation did not solve ({status})")
        # 2. branch and bound from the best incumbent while time and the gap allow
        cost = objective(jobs, workers, best)
        remaining = time_limit_s - (time.perf_counter() - t)
        if remaining > 0.2 and cost - bound > gap * abs(cost) and n_pairs <= COLUMN_GENERATION_FROM:
            pair_of = {(int(a), int(b)): p for p, (a, b) in enumerate(zip(model.pair_job, model.pair_worker, strict=True))}
            start = {pair_of[(job_pos[jid], worker_pos[name])]: job_pos[jid] for jid, name in best.items()}
            values, _, mip_bound, status = _solve_highs(model, len(jobs), len(workers), start, remaining, gap)
            bound = max(bound, mip_bound)
            if values is not None:
                mip = {jobs[int(model.pair_job[p])].job_id: workers[int(model.pair_worker[p])].worker for p in range(n_pairs) if values[p] > 0.5}
                if objective(jobs, workers, mip) < cost:
                    best = mip
    else:
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
    if best is fallback.assignments and bound == -math.inf:
        fallback.solve_s, fallback.notes, fallback.variables = time.perf_counter() - t, notes, n_pairs
        return fallback
    label = "optimal" if cost - bound <= gap * abs(cost) + 1e-9 else "feasible"
    return Allocation(best, cost, bound, label, time.perf_counter() - t, n_pairs, notes)


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
