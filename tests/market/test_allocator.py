"""The allocation program: feasibility, optimality on small instances, bounds, and fallbacks."""

from __future__ import annotations

import itertools
import math

import pytest

from llmos_chain.bench.alloc import instance
from llmos_chain.errors import AllocationError
from llmos_chain.market import allocator as A
from llmos_chain.market.allocator import JobDemand, WorkerSupply, allocate, check, fits, greedy, objective


def _brute_force(jobs: list[JobDemand], workers: list[WorkerSupply]) -> float:
    best = math.inf
    options = [[None] + [w.worker for w in workers if fits(j, w)] for j in jobs]
    for choice in itertools.product(*options):
        assignment = {j.job_id: w for j, w in zip(jobs, choice, strict=True) if w is not None}
        try:
            check(jobs, workers, assignment)
        except AllocationError:
            continue
        best = min(best, objective(jobs, workers, assignment))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_small_instances_are_solved_to_the_brute_force_optimum(seed: int) -> None:
    jobs, workers = instance(7, 3, seed=seed)
    result = allocate(jobs, workers, time_limit_s=5)
    check(jobs, workers, result.assignments)
    assert result.cost == pytest.approx(_brute_force(jobs, workers), rel=1e-9)
    assert result.bound <= result.cost + 1e-9 and result.status == "optimal"
    assert result.cost <= greedy(jobs, workers).cost + 1e-9


def test_constraints_hold_on_a_larger_instance() -> None:
    jobs, workers = instance(300, 30, seed=3)
    result = allocate(jobs, workers, time_limit_s=5)
    check(jobs, workers, result.assignments)
    used: dict[str, int] = {}
    for job in jobs:
        if job.job_id in result.assignments:
            used[result.assignments[job.job_id]] = used.get(result.assignments[job.job_id], 0) + job.gpus
    assert all(used[w.worker] <= w.free_gpus for w in workers if w.worker in used)
    assert result.gap <= 0.01


def test_fit_rules() -> None:
    worker = WorkerSupply("w", free_gpus=4, mem_gib=40, price_per_gpu_hour=2.0, speed=2.0)
    base = JobDemand(1, gpus=2, mem_gib=40, payment=10.0, deadline_s=3600 * 3, work=4.0)  # 2 h, cost 8
    assert fits(base, worker)
    assert not fits(JobDemand(1, 2, 80, 10.0, 3600 * 3, 4.0), worker)  # memory
    assert not fits(JobDemand(1, 8, 40, 100.0, 3600 * 3, 4.0), worker)  # GPUs
    assert not fits(JobDemand(1, 2, 40, 7.9, 3600 * 3, 4.0), worker)  # price cap
    assert not fits(JobDemand(1, 2, 40, 10.0, 3600 * 1.9, 4.0), worker)  # deadline


def test_check_rejects_overbooking() -> None:
    jobs = [JobDemand(i, 2, 16, 100.0, 86400, 1.0) for i in (1, 2)]
    workers = [WorkerSupply("w", 3, 24, 1.0)]
    with pytest.raises(AllocationError, match="has 3 free"):
        check(jobs, workers, {1: "w", 2: "w"})


def test_no_fitting_pair_leaves_everything_open() -> None:
    jobs = [JobDemand(1, 8, 80, 1.0, 60, 10.0)]
    result = allocate(jobs, [WorkerSupply("w", 1, 24, 1.0)])
    assert result.assignments == {} and result.cost == 1.0


def test_a_solver_without_a_solution_falls_back_to_greedy(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs, workers = instance(50, 5, seed=1)
    monkeypatch.setattr(A, "_solve_highs", lambda *a, **k: (None, math.inf, -math.inf, "Time limit reached"))
    result = allocate(jobs, workers)
    assert result.status == "greedy" and result.assignments == greedy(jobs, workers).assignments
    assert any("did not solve" in note for note in result.notes)


def test_cbc_fallback_solver() -> None:
    jobs, workers = instance(30, 4, seed=2)
    highs, cbc = allocate(jobs, workers), allocate(jobs, workers, solver="cbc", time_limit_s=10)
    check(jobs, workers, cbc.assignments)
    assert cbc.cost == pytest.approx(highs.cost, rel=0.01)


def test_column_generation_and_subgradient_bounds_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs, workers = instance(400, 40, seed=4)
    full = allocate(jobs, workers, time_limit_s=10)
    monkeypatch.setattr(A, "COLUMN_GENERATION_FROM", 0)  # force the large-instance path on a small one
    cg = allocate(jobs, workers, time_limit_s=10)
    check(jobs, workers, cg.assignments)
    assert cg.bound <= full.cost + 1e-6  # a bound never exceeds a feasible solution's cost
    assert cg.gap <= 0.02


def test_bench_alloc_json_interface() -> None:
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "alloc", "--json", "--sizes", "50x5,200x20"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]  # stdout is pure JSON (no solver banner)
    assert [(r["jobs"], r["workers"]) for r in runs] == [(50, 5), (200, 20)]
    assert all({"solve_s", "gap", "vs_greedy"} <= set(r) and r["vs_greedy"] <= 1 + 1e-9 for r in runs)
    bad = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "alloc", "--sizes", "lots"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--sizes must look like" in bad.stderr
