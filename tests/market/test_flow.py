"""The LP relaxation by min-cost flow: exact against HiGHS and brute force, its prices against the LP's optimality, its
shortest paths against a plain Bellman-Ford, and its integer scaling at extreme magnitudes."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmos_chain.bench.alloc import FAMILIES, instance
from llmos_chain.market import allocator as A
from llmos_chain.market import flow
from llmos_chain.market.allocator import JobDemand, WorkerSupply, check
from tests.market.exact import brute_force


def _lp_value(jobs: list[JobDemand], workers: list[WorkerSupply]) -> float:
    d = A._dense(jobs, workers)
    _, value, _, status = A._solve_highs(A._build(d), len(jobs), len(workers), {}, 30.0, 0.0, relax=True)
    assert status == "Optimal"
    return value


def _solve(jobs: list[JobDemand], workers: list[WorkerSupply], gap: float = -1.0) -> tuple[A._Dense, flow.FlowLP]:
    """The flow to convergence (a negative gap is never reached)."""
    d = A._dense(jobs, workers)
    greedy = A._greedy_positions(d)
    notes: list[str] = []
    lp = flow.solve(d, np.zeros(len(workers)), [greedy], time.perf_counter() + 30, gap, notes)
    assert lp is not None, notes
    return d, lp


@st.composite
def _market(draw: st.DrawFn, max_jobs: int = 8, max_workers: int = 4, one_gpu: bool = False) -> tuple[list[JobDemand], list[WorkerSupply]]:
    """Small markets with few distinct values, so costs tie often (the degenerate cases of the flow's prices)."""
    n = draw(st.integers(1, max_jobs))
    m = draw(st.integers(1, max_workers))
    workers = [WorkerSupply(f"w{i}", draw(st.integers(0, 4)), draw(st.sampled_from([24, 40, 80])),
                            draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])), draw(st.sampled_from([1.0, 2.0]))) for i in range(m)]
    jobs = [JobDemand(j + 1, 1 if one_gpu else draw(st.integers(1, 3)), draw(st.sampled_from([16, 40, 80])),
                      draw(st.sampled_from([2.0, 4.0, 6.0, 12.0])), draw(st.sampled_from([3600.0, 36000.0])),
                      draw(st.sampled_from([0.5, 1.0, 2.0]))) for j in range(n)]
    return jobs, workers


@settings(max_examples=60, deadline=None)
@given(_market(one_gpu=True))
def test_with_one_gpu_jobs_the_flow_is_the_integer_optimum(market: tuple[list[JobDemand], list[WorkerSupply]]) -> None:
    jobs, workers = market
    d, lp = _solve(jobs, workers)
    best = brute_force(jobs, workers)
    assert lp.converged
    assert lp.incumbent_cost == pytest.approx(best, rel=1e-7, abs=1e-9)
    assert lp.bound <= best + 1e-7 * max(1.0, abs(best))
    assert lp.bound == pytest.approx(best, rel=1e-6, abs=1e-9)
    check(jobs, workers, A._to_assignments(jobs, workers, lp.incumbent))


@settings(max_examples=60, deadline=None)
@given(_market())
def test_the_flow_lp_is_the_lp_relaxation(market: tuple[list[JobDemand], list[WorkerSupply]]) -> None:
    """Jobs of 1–3 GPUs: the converged flow's value and the Lagrangian value at its prices are HiGHS's LP optimum."""
    jobs, workers = market
    d, lp = _solve(jobs, workers)
    if d.n_pairs == 0:
        return
    value = _lp_value(jobs, workers)
    assert lp.converged and lp.lp_value == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert lp.bound == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert A.dense_lagrangian_bound(d, lp.prices) == pytest.approx(lp.bound)
    assert (lp.prices >= 0).all()
    # an allocation the flow found is feasible and costs no less than the LP
    check(jobs, workers, A._to_assignments(jobs, workers, lp.incumbent))
    assert lp.incumbent_cost >= value - 1e-7 * max(1.0, abs(value))


def test_prices_meet_the_lp_optimality_conditions() -> None:
    """At the converged flow, per GPU unit: no pair is cheaper at the prices than the job's best option; every pair
    carrying units is a best option; a worker with room is priced 0."""
    jobs, workers = instance(120, 12, seed=3, family="multi_gpu")
    d, lp = _solve(jobs, workers)
    assert lp.converged
    ki, pi, scale = flow._scaled(d)
    lam = np.rint(lp.prices * scale).astype(np.int64)
    adjusted = np.where(ki < flow._NOFIT, ki.astype(np.int64) + lam[None, :], np.iinfo(np.int64).max)
    best = np.minimum(pi, adjusted.min(axis=1))
    on = lp.arc_flow > 0
    assert (adjusted[lp.arc_job[on], lp.arc_worker[on]] == best[lp.arc_job[on]]).all()
    load = np.bincount(lp.arc_worker, weights=lp.arc_flow, minlength=len(workers))
    assert (lam[load < d.free] == 0).all()
    left_open = np.bincount(lp.arc_job, weights=lp.arc_flow, minlength=len(jobs)) < d.gpus
    assert (best[left_open] == pi[left_open]).all()


def _bellman_ford(nodes: int, edges: list[tuple[int, int, int]], source: int) -> list[float] | None:
    dist = [math.inf] * nodes
    dist[source] = 0
    for _ in range(nodes - 1):
        for a, b, w in edges:
            if dist[a] + w < dist[b]:
                dist[b] = dist[a] + w
    if any(dist[a] + w < dist[b] for a, b, w in edges):
        return None
    return dist


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 7).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(-5, 20)), max_size=25))))
def test_shortest_paths_against_a_plain_bellman_ford(graph: tuple[int, list[tuple[int, int, int]]]) -> None:
    nodes, edges = graph
    edges = [(a, b, w) for a, b, w in edges if a != b]
    expected = _bellman_ford(nodes, edges, 0)
    src, to, weight = (np.array(x, dtype=np.int64) for x in zip(*edges, strict=True)) if edges else (
        np.zeros(0, dtype=np.int64),) * 3
    got = flow._shortest_paths(nodes, src, to, weight, 0)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert [None if x >= flow._UNREACHED else int(x) for x in got] == [None if math.isinf(x) else x for x in expected]


@pytest.mark.parametrize("scale", [1e-9, 1e-3, 1e6, 1e12])
def test_extreme_magnitudes_stay_exact_enough_and_valid(scale: float) -> None:
    """Payments and prices from a billionth to a trillion units: the integer scaling neither overflows nor loses the
    optimum (beyond a relative 1e-6), and the bound stays a bound."""
    jobs, workers = instance(10, 3, seed=5, family="few_fit")
    jobs = [JobDemand(j.job_id, 1, j.mem_gib, j.payment * scale, j.deadline_s, j.work) for j in jobs]
    workers = [WorkerSupply(w.worker, w.free_gpus, w.mem_gib, w.price_per_gpu_hour * scale, w.speed) for w in workers]
    d, lp = _solve(jobs, workers)
    best = brute_force(jobs, workers)
    assert lp.bound <= best * (1 + 1e-9)
    assert lp.incumbent_cost == pytest.approx(best, rel=1e-6)


def test_a_failing_flow_solver_returns_nothing_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow, "_min_cost_flow", lambda *args: None)
    jobs, workers = instance(30, 4, seed=1)
    d = A._dense(jobs, workers)
    notes: list[str] = []
    assert flow.solve(d, np.zeros(len(workers)), [A._greedy_positions(d)], time.perf_counter() + 5, 0.0, notes) is None
    assert notes == ["min-cost flow: 0 rounds, " + notes[0].split(", ")[1] + ", no optimal flow"]


def test_no_round_starts_past_its_deadline() -> None:
    jobs, workers = instance(200, 20, seed=1)
    d = A._dense(jobs, workers)
    notes: list[str] = []
    assert flow.solve(d, np.zeros(len(workers)), [A._greedy_positions(d)], time.perf_counter() - 1, 0.0, notes) is None
    assert notes[0].startswith("min-cost flow: 0 rounds") and notes[0].endswith("out of time")


@pytest.mark.parametrize("family", FAMILIES)
def test_medium_families_converge_to_the_lp(family: str) -> None:
    jobs, workers = instance(400, 40, seed=2, family=family)
    d, lp = _solve(jobs, workers)
    assert lp.converged
    assert lp.bound == pytest.approx(_lp_value(jobs, workers), rel=1e-6)


def test_one_huge_payment_among_ordinary_ones_keeps_the_allocation_valid() -> None:
    """A client escrowing 10^15 times the others' payments squeezes every other cost to a few integer units in the
    scaled problem: the allocation must still obey the rules, place the huge job, never cost more than greedy, and the
    bound must stay below the optimum."""
    jobs, workers = instance(9, 3, seed=2, family="tight_memory")
    jobs[0] = JobDemand(jobs[0].job_id, 1, 16, jobs[0].payment * 1e15, jobs[0].deadline_s, jobs[0].work)
    best = brute_force(jobs, workers)
    d, lp = _solve(jobs, workers)
    assert lp.bound <= best * (1 + 1e-9)
    assert lp.incumbent[0] >= 0  # the job that pays most runs
    result = A.allocate(jobs, workers, time_limit_s=2)
    check(jobs, workers, result.assignments)
    assert jobs[0].job_id in result.assignments
    assert result.bound <= best * (1 + 1e-9) and result.cost <= A.greedy(jobs, workers).cost + 1e-9


@pytest.mark.parametrize("factor", [1e3, 1e12, math.inf, math.nan])
def test_start_prices_of_any_size_leave_the_flow_exact(factor: float) -> None:
    """The warm start's prices are only a starting point: prices far above every payment (1e12 times the largest
    overflowed int64 when scaled, and with it the first Lagrangian value, which then claimed the gap reached after one
    round at a bound 17 % below the LP), infinite or NaN ones must still give the LP optimum."""
    jobs, workers = instance(120, 12, seed=3, family="multi_gpu")
    d = A._dense(jobs, workers)
    start = np.full(len(workers), factor * float((d.payment / d.gpus).max()))
    notes: list[str] = []
    lp = flow.solve(d, start, [A._greedy_positions(d)], time.perf_counter() + 30, -1.0, notes)
    assert lp is not None and lp.converged, notes
    assert lp.bound == pytest.approx(_lp_value(jobs, workers), rel=1e-6)


def test_a_flow_the_solver_does_not_call_optimal_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """OR-Tools answering anything but OPTIMAL (infeasible, bad cost range…) ends column generation: nothing is read
    from a flow it did not prove optimal."""
    from ortools.graph.python import min_cost_flow

    class Refusing(min_cost_flow.SimpleMinCostFlow):  # type: ignore[misc]
        def solve(self) -> object:
            super().solve()
            return self.BAD_COST_RANGE

    monkeypatch.setattr(min_cost_flow, "SimpleMinCostFlow", Refusing)
    jobs, workers = instance(30, 4, seed=1)
    d = A._dense(jobs, workers)
    notes: list[str] = []
    assert flow.solve(d, np.zeros(len(workers)), [A._greedy_positions(d)], time.perf_counter() + 5, 0.0, notes) is None
    assert notes[0].endswith("no optimal flow")
