"""Allocator quality and speed on random instances: the MILP against greedy and against its proven bound.

Instances mimic a provider's fleet (L4, A100 and H100 classes with jittered prices and speeds, some
GPUs already busy) and a batch of jobs (1–8 GPUs, 16–80 GiB, a few GPU-hours of work, payments of 1–3×
a typical price, deadlines of 2–48 hours). Seeds are fixed, so a run is repeatable.
"""

from __future__ import annotations

import random
from typing import Any

from llmos_chain.errors import AllocationError
from llmos_chain.market.allocator import JobDemand, WorkerSupply, allocate, greedy

CLASSES = [  # name, GiB, GPUs, price per GPU-hour, speed
    ("L4", 24, 2, 0.6, 1.0),
    ("A100", 40, 8, 1.6, 2.5),
    ("H100", 80, 8, 3.0, 4.0),
]


def instance(n_jobs: int, n_workers: int, seed: int = 0) -> tuple[list[JobDemand], list[WorkerSupply]]:
    rnd = random.Random(seed)
    workers = []
    for i in range(n_workers):
        name, mem, gpus, price, speed = rnd.choice(CLASSES)
        workers.append(WorkerSupply(f"{name.lower()}-{i}", rnd.randint(max(1, gpus // 2), gpus), mem,
                                    price * rnd.uniform(0.8, 1.2), speed * rnd.uniform(0.9, 1.1)))
    jobs = []
    for j in range(n_jobs):
        gpus = rnd.choice([1, 1, 1, 2, 2, 4, 8])
        mem = rnd.choice([16, 16, 24, 40, 80])
        work = rnd.uniform(0.5, 6.0)
        typical = 1.6 * gpus * work / 2.5
        jobs.append(JobDemand(j + 1, gpus, mem, typical * rnd.uniform(1.0, 3.0), rnd.uniform(2, 48) * 3600, work))
    return jobs, workers


def run(sizes: list[tuple[int, int]] | None = None, time_limit_s: float = 2.0) -> dict[str, Any]:
    if not 0 < time_limit_s < float("inf"):
        raise AllocationError(f"the time limit must be a number of seconds above 0, got {time_limit_s}")
    if sizes is not None and any(n_jobs < 1 or n_workers < 1 for n_jobs, n_workers in sizes):
        raise AllocationError(f"every instance needs at least one job and one worker, got {sizes}")
    runs = []
    for n_jobs, n_workers in sizes or [(100, 10), (1000, 100), (5000, 500)]:
        jobs, workers = instance(n_jobs, n_workers)
        limit = time_limit_s if n_jobs <= 1000 else max(time_limit_s, 30.0)
        lp = allocate(jobs, workers, time_limit_s=limit, gap=0.005)
        base = greedy(jobs, workers)
        runs.append({
            "jobs": n_jobs, "workers": n_workers, "solve_s": lp.solve_s, "gap": lp.gap, "vs_greedy": lp.cost / base.cost,
            "status": lp.status, "variables": lp.variables, "assigned": len(lp.assignments),
            "greedy_assigned": len(base.assignments), "cost": lp.cost, "bound": lp.bound, "greedy_cost": base.cost,
            "time_limit_s": limit, "notes": lp.notes,
        })
    return {"runs": runs}
