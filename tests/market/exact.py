"""Reference optima for the allocation tests: brute force on tiny instances, HiGHS with no gap on medium ones."""

from __future__ import annotations

import itertools
import math

from llmos_chain.errors import AllocationError
from llmos_chain.market import allocator as A
from llmos_chain.market.allocator import JobDemand, WorkerSupply, check, fits, objective


def brute_force(jobs: list[JobDemand], workers: list[WorkerSupply]) -> float:
    """The integer optimum by trying every allocation (a handful of jobs and workers only)."""
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


def exact(jobs: list[JobDemand], workers: list[WorkerSupply]) -> float:
    """The integer optimum by HiGHS's branch and bound with no gap (medium instances only)."""
    model = A._build(A._dense(jobs, workers))
    _, value, _, status = A._solve_highs(model, len(jobs), len(workers), {}, 60.0, 0.0)
    assert status == "Optimal", status
    return value
