"""The coordinator's allocation inputs on the embedded chain (real contracts, the real solver, no worker process).

What the solver is told decides what the provider promises on chain, so each input is checked by its effect:
- time: a job is only given a worker that finishes within the job's run window (the worker has exactly
  `runTime` from the grant), and only while a full window still fits before the deadline, judged at the time the
  assign can be mined (the next block), exactly at the boundary on both sides;
- memory: a job never goes to a worker with less GPU memory than it asks for;
- GPUs: a worker's GPUs held by assigned or running jobs, or by assign transactions not yet mined or not yet seen by
  the follower, are never given out again, across cycles and across a restart.

The worker runtime is controlled through `WorkerConfig.speed`: the test recipe is tiny, so the runtime estimator
gives it its floor of `WORK_H` GPU-hours, i.e. `WORK_H * 3600 / speed` seconds on a worker.
Granted jobs are never run here: `_start_granted` is stubbed, everything else is `Coordinator.step()`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmos_chain.chain.market import JobState
from llmos_chain.market.coordinator import ASSIGN_BATCH_FROM, Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.recipe import Recipe
from llmos_chain.store import Store
from tests.helpers import PRICE, World

#: A recipe small enough that the estimator gives it its floor: WORK_H GPU-hours at speed 1.0.
RECIPE = Recipe.parse(json.dumps({
    "task": "sequence-classification", "method": "lora", "base_model": {"kind": "config", "name": "tiny-bert"},
    "hyper": {"steps": 4, "learning_rate": 2e-2, "batch_size": 4, "max_length": 16},
}))
WORK_H = 1e-3
HOUR = 3600
#: Chain states in which a job holds its worker's GPUs.
HOLDING = (JobState.ASSIGNED, JobState.RUNNING, JobState.SUBMITTED, JobState.FAILURE_CLAIMED, JobState.DISPUTED,
           JobState.FAILURE_DISPUTED)
CHEAP, DEAR = 10**9, 10**14  # per GPU-hour in wei: SLOW at CHEAP (2 h) costs less than FAST at DEAR (3.6 s); both far below PRICE
FAST, SLOW = 1.0, WORK_H * HOUR / (2 * HOUR)  # SLOW needs exactly 2 h for the recipe


def runtime_s(speed: float) -> float:
    return WORK_H * HOUR / speed


@dataclass
class Provider:
    """An operator's workers registered on chain, and a coordinator for them over one SQLite store."""

    world: World
    tmp: Path
    configs: list[WorkerConfig]
    confirmations: int = 0
    operator: LocalAccount | None = None  # the world's operator unless given
    jobs: list[int] = field(default_factory=list)
    posted: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # job → (GPUs, GiB, run time) it asked for
    coordinator: Coordinator = field(init=False)

    def __post_init__(self) -> None:
        (self.tmp / "recipe.json").write_bytes(RECIPE.canonical_bytes())
        self.coordinator = self.restart()

    def restart(self) -> Coordinator:
        """A new coordinator process on the same store (nothing kept in memory)."""
        command = WorkerCommand("http://127.0.0.1:9", self.tmp / "deployment.json", self.tmp / "ks", "worker", self.tmp / "results",
                                self.tmp / "work", file_roots=(self.tmp.resolve(),))
        c = Coordinator(self.world.suite, Store(self.tmp / "coordinator.db"), self.operator or self.world.operator, self.configs,
                        Executor(command, self.tmp / "logs"), confirmations=self.confirmations)
        c._start_granted = lambda: []  # type: ignore[method-assign]  # granted jobs are not run in these tests
        self.coordinator = c
        return c

    def post(self, gpus: int = 1, mem: int = 16, run_time: int = HOUR, amount: int = PRICE, **overrides: Any) -> int:
        overrides.setdefault("recipe_uri", (self.tmp.resolve() / "recipe.json").as_uri())
        job = self.world.post(recipe_hash=RECIPE.hash(), gpu_count=gpus, gpu_mem_gib=mem, run_time=run_time, amount=amount, **overrides)
        self.jobs.append(job)
        self.posted[job] = (gpus, mem, run_time)
        return job

    def post_many(self, jobs: list[tuple[int, int, int]]) -> list[int]:
        """(GPUs, GiB, run time) each, posted in one transaction."""
        uri = (self.tmp.resolve() / "recipe.json").as_uri()
        requests = [self.world.request(recipe_hash=RECIPE.hash(), recipe_uri=uri, gpu_count=g, gpu_mem_gib=m, run_time=r, amount=PRICE)
                    for g, m, r in jobs]
        ids, _ = self.world.act(self.world.client).post_jobs(requests)
        self.jobs.extend(ids)
        self.posted.update(zip(ids, jobs, strict=True))
        return ids

    def state(self, job: int) -> JobState:
        return JobState(self.world.suite.market.functions.getJob(job).call()[0])

    def step(self) -> list[int]:
        report = self.coordinator.step()
        self.check_capacity()
        return report.assigned

    def worker_of(self, job: int) -> str | None:
        """The worker whose GPUs the job holds on chain (the record alone: `getJob`)."""
        state, _, _, worker, _ = self.world.suite.market.functions.getJob(job).call()
        return str(worker) if JobState(state) in HOLDING else None

    def assign_intents(self) -> list[tuple[int, str, str]]:
        """(job, worker, status) of every assign the coordinator ever decided on, alone or in an assignMany."""
        rows = self.coordinator.store.db.execute("SELECT key, function, args, status FROM outbox "
                                                 "WHERE function IN ('assign', 'assignMany') ORDER BY id")
        return [(job, worker, r["status"]) for r in rows for job, worker in _jobs_of(r["function"], r["key"], json.loads(r["args"]))]

    def held(self) -> dict[str, int]:
        """GPUs each worker holds: jobs assigned to it on chain, plus assign intents not (yet) on chain."""
        held: dict[str, int] = {}
        gpus = {job: self.posted[job][0] for job in self.jobs}
        on_chain = {job: self.worker_of(job) for job in self.jobs}
        for job, worker in on_chain.items():
            if worker is not None:
                held[worker] = held.get(worker, 0) + gpus[job]
        for intent in self.coordinator.outbox.pending():
            for job, worker in _jobs_of(intent.function, intent.key, intent.args):
                if on_chain.get(job) != worker:
                    held[worker] = held.get(worker, 0) + gpus[job]
        return held

    def check_capacity(self) -> None:
        held = self.held()
        for w in self.configs:
            assert held.get(w.address, 0) <= w.gpus, f"worker {w.address} overbooked: {held.get(w.address)} GPUs of {w.gpus}"

    def free(self) -> dict[str, int]:
        held = self.held()
        return {w.address: w.gpus - held.get(w.address, 0) for w in self.configs}


def _jobs_of(function: str, key: str, args: list[Any]) -> list[tuple[int, str]]:
    """(job, worker) an assign intent decides: `assign:JOB:WORKER:…` or `assign-many:WORKER:…` with the jobs in its args."""
    if function == "assign":
        return [(int(key.split(":")[1]), key.split(":")[2])]
    if function == "assignMany":
        return [(int(job), key.split(":")[1]) for job in args[0]]
    return []


def provider(world: World, tmp: Path, workers: list[tuple[int, int, int, float]], confirmations: int = 0,
             registered: list[str] | None = None, operator: LocalAccount | None = None) -> Provider:
    """One worker per (gpus, mem GiB, price per GPU-hour in wei, speed), registered on chain as configured; or, given
    `registered`, the coordinator's configuration of workers already registered (with at least that much)."""
    configs = []
    for i, (gpus, mem, price, speed) in enumerate(workers):
        if registered is None:
            key = Account.create()
            world.register_worker(operator=operator, worker_key=key, gpus=gpus, mem=mem)
            address = str(key.address)
        else:
            address = registered[i]
        configs.append(WorkerConfig(address, gpus, mem, price, speed=speed))
    return Provider(world, tmp, configs, confirmations, operator)


# ------------------------------------------------------------------ time


def test_a_job_only_goes_to_a_worker_that_finishes_within_its_run_window(world: World, tmp_path: Path) -> None:
    """The solver's time input is the run window (the worker has `runTime` from the grant), not the absolute deadline
    nor the time left until it: a job whose deadline is a week away but whose window is 1 h never goes to the cheap
    worker that needs 2 h."""
    p = provider(world, tmp_path, [(4, 80, CHEAP, SLOW), (4, 80, DEAR, FAST)])
    slow, fast = (w.address for w in p.configs)
    assert runtime_s(SLOW) == 2 * HOUR and runtime_s(FAST) == 3.6
    short = p.post(run_time=HOUR)  # only the fast worker finishes in time
    exact = p.post(run_time=2 * HOUR)  # the slow worker just finishes: it is cheaper, so it gets it
    long = p.post(run_time=3 * HOUR)
    hopeless = p.post(run_time=3)  # even the fast worker needs 3.6 s
    for _ in range(3):
        p.step()
    decided = {job: worker for job, worker, _ in p.assign_intents()}
    assert decided == {short: fast, exact: slow, long: slow}
    assert {job: p.worker_of(job) for job in p.jobs} == {short: fast, exact: slow, long: slow, hopeless: None}
    assert all(status == "confirmed" for *_, status in p.assign_intents())


def test_the_run_window_boundary_is_judged_at_the_block_the_assign_lands_in(world: World, tmp_path: Path) -> None:
    """`assign` needs block.timestamp <= deadline - runTime. The coordinator reads the latest block at `t - 1`; its assign
    can land at `t` at the earliest. A job whose latest start is `t` is taken in that very block; one whose latest
    start is `t - 1` (it still "fits" at the latest block's time) is never chosen, even though it pays more and would
    take the only GPU."""
    p = provider(world, tmp_path, [(1, 80, CHEAP, FAST)])
    t = world.next_time() + 1000
    fits = p.post(deadline=t + HOUR, run_time=HOUR)  # latest start: t
    late = p.post(deadline=t - 1 + HOUR, run_time=HOUR, amount=2 * PRICE)  # latest start: t - 1
    world.at(t)  # the latest block is at t - 1; the next one is at t
    assert world.now() == t - 1
    assert p.step() == [fits]
    assert world.job(fits).state is JobState.ASSIGNED and world.job(fits).since == t  # assigned at its last possible second
    for _ in range(2):
        p.step()
    assert [job for job, *_ in p.assign_intents()] == [fits]  # the late job was never chosen (no intent, no revert)
    assert world.job(late).state is JobState.OPEN


# ------------------------------------------------------------------ memory


def test_a_job_never_goes_to_a_worker_with_too_little_gpu_memory(world: World, tmp_path: Path) -> None:
    p = provider(world, tmp_path, [(2, 24, CHEAP, FAST), (2, 80, DEAR, FAST)])
    small, big = (w.address for w in p.configs)
    needs_48 = p.post(mem=48)  # only the big worker has the memory, though the small one is cheaper
    needs_24 = p.post(mem=24)  # exactly the small worker's memory: it is cheaper, it gets it
    needs_96 = p.post(mem=96)  # no worker has it
    for _ in range(3):
        p.step()
    decided = {job: worker for job, worker, _ in p.assign_intents()}
    assert decided == {needs_48: big, needs_24: small}
    assert {job: p.worker_of(job) for job in p.jobs} == {needs_48: big, needs_24: small, needs_96: None}
    assert all(status == "confirmed" for *_, status in p.assign_intents())


# ------------------------------------------------------------------ GPUs


def test_gpus_held_by_assigned_and_running_jobs_are_never_given_again(world: World, tmp_path: Path) -> None:
    """More GPU demand than is free, over several cycles: jobs already assigned (and granted, i.e. running) keep their
    GPUs; new jobs only get what is left."""
    p = provider(world, tmp_path, [(2, 80, CHEAP, FAST), (1, 80, DEAR, FAST)])
    big, small = (w.address for w in p.configs)
    running = p.post(gpus=2)
    assert p.step() == [running] and p.worker_of(running) == big
    world.grant(running)
    assert world.job(running).state is JobState.RUNNING
    one_a, one_b, two = p.post(gpus=1), p.post(gpus=1), p.post(gpus=2)
    taken = [job for _ in range(3) for job in p.step()]
    assert len(taken) == 1 and p.worker_of(taken[0]) == small  # only the small worker had a free GPU
    assert {p.worker_of(j) for j in (one_a, one_b, two) if j != taken[0]} == {None}
    assert p.free() == {big: 0, small: 0}
    assigned = p.post(gpus=1)
    for _ in range(2):
        p.step()
    assert p.worker_of(assigned) is None and p.held() == {big: 2, small: 1}


def test_an_assign_not_yet_sent_holds_its_gpus_also_after_a_restart(world: World, tmp_path: Path) -> None:
    """A coordinator killed after recording its assign and before sending it: the restarted one (which has not looked
    up any worker id yet) allocates while that assign is still in its outbox, and must count its GPUs."""
    p = provider(world, tmp_path, [(1, 80, CHEAP, FAST)])
    (worker,) = (w.address for w in p.configs)
    first = p.post()
    c = p.coordinator
    c.follower.poll()
    assert c._allocate()[0] == [first]  # recorded; killed before the send
    second = p.post(amount=2 * PRICE)  # pays more
    c = p.restart()
    c.follower.poll()
    assert c._allocate()[0] == []  # the only GPU is promised to the unsent assign
    p.check_capacity()
    for _ in range(3):
        p.step()
    assert p.worker_of(first) == worker and world.job(second).state is JobState.OPEN
    assert [(job, status) for job, _, status in p.assign_intents()] == [(first, "confirmed")]


def test_an_assign_mined_after_the_follower_read_the_chain_holds_its_gpus(world: World, tmp_path: Path) -> None:
    """The step reads the chain, then drives the outbox: an assign mined in between is confirmed in the outbox while
    the store still shows its job Open. Its GPUs must not be given to another job in that step. (Here the first
    step's send did not happen, as after a node error in that phase; on a live chain a block arriving between the
    read and the send does the same.)"""
    p = provider(world, tmp_path, [(1, 80, CHEAP, FAST)])
    (worker,) = (w.address for w in p.configs)
    first = p.post()
    c = p.coordinator
    c.follower.poll()
    assert c._allocate()[0] == [first]  # the step's send phase failed: the assign goes out in the next step
    second = p.post(amount=2 * PRICE)  # pays more
    assert p.step() == []  # reads `second`; sends and confirms `first`'s assign; must not give `second` the GPU
    for _ in range(2):
        p.step()
    assert p.worker_of(first) == worker and world.job(second).state is JobState.OPEN
    assert [job for job, *_ in p.assign_intents()] == [first]


def test_a_job_assigned_but_not_yet_read_is_not_offered_to_another_worker(world: World, tmp_path: Path) -> None:
    """The same moment from the job's side: the store still shows the job Open, but our assign of it is mined; another
    free worker must not be given it (that assign could only revert: JobInvalidState)."""
    p = provider(world, tmp_path, [(1, 80, CHEAP, FAST), (1, 80, DEAR, FAST)])
    cheap, _ = (w.address for w in p.configs)
    job = p.post()
    c = p.coordinator
    c.follower.poll()
    assert c._allocate()[0] == [job]  # to the cheap worker; sent in the next step, after its read of the chain
    assert p.step() == []
    p.step()
    assert p.worker_of(job) == cheap
    assert p.assign_intents() == [(job, cheap, "confirmed")]


def test_with_confirmations_an_assign_deeper_than_the_follower_read_holds_its_gpus(world: World, tmp_path: Path) -> None:
    """`confirmations=1`, and a new block arrives right after each read of the chain (a live chain): the assign is
    final in the outbox one block before the follower reads it. In between its GPUs are still taken."""
    p = provider(world, tmp_path, [(1, 80, CHEAP, FAST)], confirmations=1)
    (worker,) = (w.address for w in p.configs)
    poll = p.coordinator.follower.poll

    def poll_then_a_block() -> Any:
        result = poll()
        world.advance(1)
        return result

    p.coordinator.follower.poll = poll_then_a_block  # type: ignore[method-assign]
    first = p.post()
    second = p.post(amount=2 * PRICE)  # pays more, but is read one step later
    assert p.step() == [first]  # the follower read only `first`
    for _ in range(3):
        p.step()
    assert p.worker_of(first) == worker and world.job(second).state is JobState.OPEN
    assert [(job, status) for job, _, status in p.assign_intents()] == [(first, "confirmed")]


def test_jobs_that_cannot_be_taken_do_not_fill_the_batch(world: World, tmp_path: Path) -> None:
    """With `max_batch`, open jobs the coordinator skips (window passed, recipe unreadable) must not take the batch's
    places: otherwise they starve every job behind them for as long as they stay open on chain."""
    p = provider(world, tmp_path, [(4, 80, CHEAP, FAST)])
    p.coordinator.max_batch = 1
    t = world.next_time() + 100
    expired = p.post(deadline=t + HOUR, run_time=HOUR)
    unreadable = p.post(recipe_uri=(tmp_path / "missing.json").as_uri())
    world.at(t + 10)
    takeable = p.post()
    for _ in range(2):
        p.step()
    assert p.worker_of(takeable) == p.configs[0].address
    assert world.job(expired).state is JobState.OPEN and world.job(unreadable).state is JobState.OPEN


# ------------------------------------------------------------------ random mixes

# Small workers and jobs, in at least two waves: a worker fills up and the next wave must find it full.
WORKER = st.tuples(st.integers(1, 3), st.sampled_from([16, 24, 48, 80]), st.sampled_from([CHEAP, DEAR]), st.sampled_from([SLOW, FAST]))
JOB = st.tuples(st.integers(1, 2), st.sampled_from([16, 24, 48, 80, 96]), st.sampled_from([3, HOUR, 2 * HOUR, 3 * HOUR]))


@pytest.fixture
def pool(world: World) -> list[str]:
    """Three workers registered with the most any example configures (8 GPUs, 96 GiB): what the coordinator may use
    of each is its configuration, so the examples need no registration of their own."""
    keys = [Account.create() for _ in range(3)]
    for key in keys:
        world.register_worker(worker_key=key, gpus=8, mem=96)
    return [str(k.address) for k in keys]


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(workers=st.lists(WORKER, min_size=1, max_size=3), waves=st.lists(st.lists(JOB, min_size=1, max_size=3), min_size=2, max_size=3),
       grant=st.booleans())
def test_random_mixes_never_overbook_and_respect_memory_and_time(world: World, pool: list[str], workers: list[Any], waves: list[Any],
                                                                 grant: bool) -> None:
    """Jobs arrive in waves over random workers; after every cycle no worker holds more GPUs than it has (counting
    assigned, running and in-flight jobs); every assign the coordinator decided on fits its worker's GPUs, memory
    and speed and went through on chain; and at the end no open job that fits a worker's free GPUs is left open."""
    tester = world.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    snapshot = tester.take_snapshot()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            p = provider(world, Path(tmp), workers, registered=pool)
            by_address = {w.address: w for w in p.configs}
            for wave in waves:
                p.post_many(wave)
                p.step()
                if grant:
                    for job in p.jobs:
                        if p.state(job) is JobState.ASSIGNED:
                            world.grant(job)
                p.check_capacity()
            p.step()
            for job, address, status in p.assign_intents():
                w, (gpus, mem, run_time) = by_address[address], p.posted[job]
                assert status == "confirmed", (job, address, status)
                assert gpus <= w.gpus and mem <= w.mem_gib and runtime_s(w.speed) <= run_time, (job, address)
                assert p.worker_of(job) == address
            free = p.free()
            for job, (gpus, mem, run_time) in p.posted.items():
                if p.state(job) is JobState.OPEN:
                    assert not [w for w in p.configs if free[w.address] >= gpus and w.mem_gib >= mem and runtime_s(w.speed) <= run_time], \
                        f"job {job} fits a free worker but was left open"
    finally:
        tester.revert_to_snapshot(snapshot)


# ------------------------------------------------------------------ batched assignment


def _market_txs(world: World, function: str) -> list[Any]:
    """Every mined call of `function` to the market (decoded input, receipt status)."""
    out = []
    for number in range(world.suite.deployment.start_block, world.w3.eth.block_number + 1):
        for tx in world.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["to"] == world.suite.market.address:
                fn, args = world.suite.market.decode_function_input(tx["input"] if "input" in tx else tx["data"])  # eth-tester: data
                if fn.fn_name == function:
                    out.append((args, world.w3.eth.get_transaction_receipt(tx["hash"])["status"]))
    return out


def test_many_jobs_for_one_worker_go_in_one_assign_many_and_fewer_one_each(world: World, tmp_path: Path) -> None:
    """From ASSIGN_BATCH_FROM jobs for one worker in one allocation, one assignMany carries them; below that, one
    assign each (a batch reverts as a whole if a competitor takes one of its jobs)."""
    p = provider(world, tmp_path, [(8, 80, CHEAP, FAST), (8, 80, DEAR, FAST)])
    cheap, dear = (w.address for w in p.configs)
    many = p.post_many([(1, 16, HOUR)] * ASSIGN_BATCH_FROM)  # all fit the cheap worker
    for _ in range(3):
        p.step()
    assert {job: p.worker_of(job) for job in many} == dict.fromkeys(many, cheap)
    (batch,) = _market_txs(world, "assignMany")
    assert sorted(batch[0]["jobIds"]) == sorted(many) and batch[1] == 1 and _market_txs(world, "assign") == []
    few = p.post_many([(1, 16, HOUR)] * (ASSIGN_BATCH_FROM - 1))  # the 4 GPUs the cheap worker has left
    for _ in range(3):
        p.step()
    assert {job: p.worker_of(job) for job in few} == dict.fromkeys(few, cheap)
    assert sorted(int(args["jobId"]) for args, _ in _market_txs(world, "assign")) == sorted(few)
    assert len(_market_txs(world, "assignMany")) == 1 and p.free() == {cheap: 1, dear: 8}


def test_a_batch_that_lost_one_job_to_a_competitor_assigns_the_rest_again(world: World, tmp_path: Path) -> None:
    """A competitor's assign of one of the batch's jobs lands between the allocation and the send: the batch's
    estimate reverts, so nothing of it is sent; once it is given up, the other jobs are allocated again, without the
    taken one, and nothing is overbooked."""
    p = provider(world, tmp_path, [(8, 80, CHEAP, FAST)])
    (worker,) = (w.address for w in p.configs)
    jobs = p.post_many([(1, 16, HOUR)] * max(5, ASSIGN_BATCH_FROM + 1))
    c = p.coordinator
    c.outbox.revert_patience_s = 0.0  # give a reverting estimate up at once (daemons wait 5 s for lagging backends)
    c.follower.poll()
    assert sorted(c._allocate()[0]) == sorted(jobs)  # one assignMany recorded, not sent yet
    world.act(world.client).cancel(jobs[0])  # the client withdraws one job meanwhile: the batch can only revert
    for _ in range(4):
        p.step()
    assert world.job(jobs[0]).state is JobState.CANCELLED
    assert {job: p.worker_of(job) for job in jobs[1:]} == dict.fromkeys(jobs[1:], worker)
    statuses = {r["key"]: r["status"] for r in c.store.db.execute("SELECT key, status FROM outbox WHERE function = 'assignMany'")}
    assert sorted(statuses.values()) == ["confirmed", "failed"]  # the first given up (its estimate reverted), then the rest
    assert [status for _, status in _market_txs(world, "assignMany")] == [1]  # nothing reverted on chain: no gas wasted
