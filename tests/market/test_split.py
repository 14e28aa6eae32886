"""The split allocation: feasibility by the rules (written here, not taken from the solver's code), optimality against
brute force on small instances, the penalty's effect, and proven bounds on both paths."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmos_chain.bench.alloc import instance
from llmos_chain.errors import AllocationError
from llmos_chain.market import split as S
from llmos_chain.market.allocator import JobDemand, WorkerSupply, allocate
from llmos_chain.market.split import allocate_split, check_split, split_objective

Placements = dict[int, dict[str, int]]


def _runtime_h(job: JobDemand, node: WorkerSupply) -> float:
    return job.work / node.speed


def _violations(jobs: list[JobDemand], nodes: list[WorkerSupply], placements: Placements) -> list[str]:
    """Every rule a placement breaks: Σ_n a_jn = D_j (or nothing), a_jn ≥ 1 only on known nodes, per-GPU memory,
    the deadline at each node's speed, Σ_n price × a_jn × runtime ≤ payment, and Σ_j a_jn ≤ free GPUs per node."""
    by_name, by_id = {n.worker: n for n in nodes}, {j.job_id: j for j in jobs}
    wrong = []
    use = {n.worker: 0 for n in nodes}
    for job_id, on in placements.items():
        job = by_id[job_id]
        if sum(on.values()) != job.gpus:
            wrong.append(f"job {job_id}: {sum(on.values())} GPUs placed of {job.gpus}")
        cost = 0.0
        for name, gpus in on.items():
            node = by_name[name]
            if gpus < 1:
                wrong.append(f"job {job_id}: {gpus} GPUs on {name}")
            if node.mem_gib < job.mem_gib:
                wrong.append(f"job {job_id}: {job.mem_gib} GiB per GPU on {name} with {node.mem_gib}")
            if _runtime_h(job, node) * 3600 > job.deadline_s:
                wrong.append(f"job {job_id}: misses its deadline on {name}")
            cost += node.price_per_gpu_hour * gpus * _runtime_h(job, node)
            use[name] += gpus
        if cost > job.payment * (1 + 1e-9):
            wrong.append(f"job {job_id}: costs {cost} > pays {job.payment}")
    wrong += [f"node {n.worker}: {use[n.worker]} GPUs of {n.free_gpus}" for n in nodes if use[n.worker] > n.free_gpus]
    return wrong


def _value(jobs: list[JobDemand], nodes: list[WorkerSupply], placements: Placements, penalty: float) -> float:
    """Running costs + payments forgone + penalty × extra nodes, from the definition."""
    by_name = {n.worker: n for n in nodes}
    total = 0.0
    for job in jobs:
        on = placements.get(job.job_id)
        if on:
            total += sum(by_name[k].price_per_gpu_hour * g * _runtime_h(job, by_name[k]) for k, g in on.items())
            total += penalty * (len(on) - 1)
        else:
            total += job.payment
    return total


def _splits(d: int, nodes: list[WorkerSupply]) -> list[dict[str, int]]:
    """Every way to put d GPUs on the nodes, each node at most its free GPUs."""
    out = []
    for parts in itertools.product(*[range(min(d, n.free_gpus) + 1) for n in nodes]):
        if sum(parts) == d:
            out.append({n.worker: g for n, g in zip(nodes, parts, strict=True) if g})
    return out


def _brute_force(jobs: list[JobDemand], nodes: list[WorkerSupply], penalty: float) -> float:
    options = [[None] + [p for p in _splits(j.gpus, nodes) if not _violations([j], nodes, {j.job_id: p})] for j in jobs]
    best = math.inf
    for choice in itertools.product(*options):
        placements = {j.job_id: p for j, p in zip(jobs, choice, strict=True) if p is not None}
        if not _violations(jobs, nodes, placements):
            best = min(best, _value(jobs, nodes, placements, penalty))
    return best


@st.composite
def _instances(draw: st.DrawFn) -> tuple[list[JobDemand], list[WorkerSupply], float]:
    nodes = [WorkerSupply(f"n{i}", draw(st.integers(0, 4)), draw(st.sampled_from([24, 40, 80])),
                          draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])), draw(st.sampled_from([1.0, 2.0, 2.5])))
             for i in range(draw(st.integers(1, 3)))]
    jobs = [JobDemand(j + 1, draw(st.integers(1, 7)), draw(st.sampled_from([16, 40, 80])), float(draw(st.integers(1, 30))),
                      draw(st.sampled_from([0.5, 1.0, 4.0])) * 3600, draw(st.sampled_from([0.5, 1.0, 2.0])))
            for j in range(draw(st.integers(1, 3)))]
    return jobs, nodes, draw(st.sampled_from([0.0, 0.25, 1.0, 5.0]))


_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_instances())
def test_small_instances_match_the_brute_force_optimum(case: tuple[list[JobDemand], list[WorkerSupply], float]) -> None:
    jobs, nodes, penalty = case
    result = allocate_split(jobs, nodes, time_limit_s=10, gap=1e-9, node_penalty=penalty)
    assert _violations(jobs, nodes, result.placements) == []
    optimum = _brute_force(jobs, nodes, penalty)
    assert result.objective == pytest.approx(_value(jobs, nodes, result.placements, penalty), abs=1e-9)
    assert result.objective == pytest.approx(optimum, abs=1e-6)
    assert result.bound <= optimum + 1e-6 and result.status == "optimal"
    assert result.split_jobs == sorted(j for j, on in result.placements.items() if len(on) > 1)


@_SETTINGS
@given(_instances())
def test_the_large_path_is_feasible_and_its_bound_proven(case: tuple[list[JobDemand], list[WorkerSupply], float]) -> None:
    jobs, nodes, penalty = case
    optimum = _brute_force(jobs, nodes, penalty)
    saved = S.WHOLE_MODEL_UP_TO
    S.WHOLE_MODEL_UP_TO = 0  # the column-generation LP, its rounding, the core MILP and the Lagrangian bound
    try:
        result = allocate_split(jobs, nodes, time_limit_s=5, node_penalty=penalty)
    finally:
        S.WHOLE_MODEL_UP_TO = saved
    assert _violations(jobs, nodes, result.placements) == []
    assert result.objective >= optimum - 1e-6 and result.bound <= optimum + 1e-6


@_SETTINGS
@given(_instances(), st.lists(st.floats(0, 10), min_size=3, max_size=3))
def test_the_lagrangian_bound_holds_for_any_prices(case: tuple[list[JobDemand], list[WorkerSupply], float],
                                                   prices: list[float]) -> None:
    jobs, nodes, penalty = case
    bound, _ = S.split_lagrangian_bound(S._arrays(jobs, nodes), prices[: len(nodes)], penalty)
    assert bound <= _brute_force(jobs, nodes, penalty) + 1e-6


def _node(name: str, gpus: int, price: float = 1.0, mem: int = 40, speed: float = 1.0) -> WorkerSupply:
    return WorkerSupply(name, gpus, mem, price, speed)


def _job(job_id: int, gpus: int, mem: int = 40, payment: float = 1000.0, work: float = 1.0) -> JobDemand:
    return JobDemand(job_id, gpus, mem, payment, 86400, work)


def test_a_job_bigger_than_any_node_is_split() -> None:
    nodes = [_node("a", 8), _node("b", 8), _node("c", 8, price=2.0)]
    result = allocate_split([_job(1, 12)], nodes)
    assert result.placements == {1: {"a": 8, "b": 4}} and result.split_jobs == [1]
    assert result.objective == pytest.approx(12 * 1.0 + S.DEFAULT_NODE_PENALTY)
    assert allocate([_job(1, 12)], nodes).assignments == {}  # today's program cannot place it at all


def test_the_penalty_keeps_a_job_on_one_node_at_the_same_price() -> None:
    nodes = [_node("a", 4), _node("b", 4), _node("c", 8)]  # a + b and c cost the same per GPU
    for penalty in (0.01, 1.0):
        result = allocate_split([_job(1, 8)], nodes, node_penalty=penalty)
        assert result.placements == {1: {"c": 8}} and result.split_jobs == [] and result.objective == pytest.approx(8.0)


def test_a_split_wins_only_where_it_saves_more_than_the_penalty() -> None:
    nodes = [_node("a", 4), _node("b", 4), _node("c", 8, price=2.0)]  # packed on c: 16; split over a and b: 8 + penalty
    cheap = allocate_split([_job(1, 8)], nodes, node_penalty=1.0)
    assert cheap.placements == {1: {"a": 4, "b": 4}} and cheap.objective == pytest.approx(9.0)
    dear = allocate_split([_job(1, 8)], nodes, node_penalty=10.0)
    assert dear.placements == {1: {"c": 8}} and dear.objective == pytest.approx(16.0)


def test_demand_no_nodes_can_hold_leaves_the_job_open() -> None:
    nodes = [_node("a", 8), _node("b", 8)]
    result = allocate_split([_job(1, 20, payment=50.0), _job(2, 4)], nodes)
    assert 1 not in result.placements and sum(result.placements[2].values()) == 4
    assert result.objective == pytest.approx(50.0 + 4.0)


def test_memory_per_gpu_is_respected() -> None:
    nodes = [_node("big", 4, price=3.0, mem=80), _node("small", 8, price=0.5, mem=40)]
    result = allocate_split([_job(1, 8, mem=80, payment=500.0), _job(2, 4, mem=80, payment=500.0)], nodes)
    # job 1 would need 8 GPUs of 80 GiB: only 4 exist; job 2 fits the big node only, though the small one is cheaper
    assert result.placements == {2: {"big": 4}}
    assert _violations([_job(1, 8, mem=80), _job(2, 4, mem=80)], nodes, result.placements) == []


def test_check_split_rejects_what_the_rules_forbid() -> None:
    jobs, nodes = [_job(1, 4, mem=80)], [_node("a", 2, mem=80), _node("b", 4, mem=40)]
    with pytest.raises(AllocationError, match="not its 4 GPUs"):
        check_split(jobs, nodes, {1: {"a": 2}})
    with pytest.raises(AllocationError, match="cannot run on node b"):
        check_split(jobs, nodes, {1: {"a": 2, "b": 2}})
    with pytest.raises(AllocationError, match="has 2 free"):
        check_split([_job(1, 4)], [_node("a", 2), _node("b", 2)], {1: {"a": 3, "b": 1}})
    # the price cap: never binding at the optimum (open is cheaper than a loss), so the final check guards incumbents
    with pytest.raises(AllocationError, match="more than it pays"):
        check_split([_job(1, 4, payment=3.5)], [_node("a", 2), _node("b", 2)], {1: {"a": 2, "b": 2}})


@pytest.mark.parametrize("seed", range(4))
def test_with_every_job_within_one_node_it_is_no_worse_than_allocate(seed: int) -> None:
    jobs, nodes = instance(12, 4, seed=seed)
    packed = allocate(jobs, nodes, time_limit_s=5, gap=1e-9)
    result = allocate_split(jobs, nodes, time_limit_s=10, gap=1e-9)
    assert _violations(jobs, nodes, result.placements) == []
    assert result.objective <= packed.cost + 1e-6
    assert result.objective == pytest.approx(split_objective(jobs, nodes, result.placements))


def test_where_no_split_can_help_the_packed_allocation_stands() -> None:
    nodes = [_node(f"n{i}", 8) for i in range(3)]
    jobs = [_job(i + 1, g) for i, g in enumerate([8, 4, 4, 2])]  # all fit, at the one price
    result = allocate_split(jobs, nodes)
    assert {j: next(iter(on)) for j, on in result.placements.items()} == allocate(jobs, nodes).assignments
    assert result.split_jobs == [] and any("packed allocation stands" in n for n in result.notes)


def test_one_job_is_the_seed_formula() -> None:
    """min Σ R_i a_i s.t. Σ a_i = D, 0 ≤ a_i ≤ R_i with R_i the prices: the cheapest GPUs first (π = 0)."""
    nodes = [_node("a", 3, price=2.0), _node("b", 5, price=1.0), _node("c", 4, price=3.0)]
    result = allocate_split([_job(1, 10)], nodes, node_penalty=0.0)
    assert result.placements == {1: {"b": 5, "a": 3, "c": 2}} and result.objective == pytest.approx(5 + 6 + 6)


def test_cluster_instances_large_path_against_the_whole_model(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs, nodes = instance(120, 12, seed=1, family="cluster")
    whole = allocate_split(jobs, nodes, time_limit_s=10)
    monkeypatch.setattr(S, "WHOLE_MODEL_UP_TO", 0)
    large = allocate_split(jobs, nodes, time_limit_s=10)
    for result in (whole, large):
        assert _violations(jobs, nodes, result.placements) == []
        assert result.objective <= allocate(jobs, nodes, time_limit_s=5).cost + 1e-6
    assert large.bound <= whole.objective + 1e-6 and whole.bound <= large.objective + 1e-6
    assert whole.split_jobs and large.gap <= 0.02


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(AllocationError, match="time limit"):
        allocate_split([], [], time_limit_s=0)
    with pytest.raises(AllocationError, match="penalty"):
        allocate_split([], [], node_penalty=-1)


def test_empty_inputs() -> None:
    assert allocate_split([], [_node("a", 8)]).placements == {}
    for nodes in ([], [_node("a", 0)]):
        result = allocate_split([_job(1, 4, payment=10.0)], nodes)
        assert result.placements == {} and result.objective == 10.0 and result.bound == 10.0 and result.gap == 0.0
