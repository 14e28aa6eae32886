"""Property-based stateful test: random actions by random actors against a model of the market.

Every step predicts from the model whether the action must succeed, checks that it did (or reverted),
and after every step checks the invariants: balances equal open escrows plus credits (and stakes),
locked collateral matches the active jobs, every job is in the model's state, terminal states never
change, nobody is paid more than credited, and attestations from anyone but the assigned worker's
signer, or for another job, chain or contract, fail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.market import JobState, ZERO_ADDRESS
from llmos_chain.errors import ContractRevertError
from tests.helpers import COLLATERAL_PER_GPU, GRANT_TIMEOUT, World, deploy_world

ACTIVE = {JobState.ASSIGNED, JobState.RUNNING, JobState.SUBMITTED, JobState.DISPUTED}
WINDOW = 3600
GRANT_TTL = 30 * 24 * 3600


@dataclass
class ModelJob:
    client: str
    token: str
    escrow: int
    gpus: int
    deadline: int
    state: JobState = JobState.OPEN
    worker: str | None = None
    since: int = 0


class _Base:
    """One deployment shared by every example; each example starts from its snapshot."""

    world: World | None = None
    snapshot: Any = None

    @classmethod
    def get(cls) -> World:
        if cls.world is None:
            world = deploy_world(connect())
            a = world.accounts
            # two workers: W1 8 GPUs / 1 ETH stake (operator a4, signer a5); W2 2 GPUs / 0.02 ETH (operator a7, signer a8)
            world.register_worker(operator=a[4], worker_key=a[5], gpus=8, mem=80, stake=10**18)
            world.register_worker(operator=a[7], worker_key=a[8], gpus=2, mem=24, stake=2 * COLLATERAL_PER_GPU)
            world.register_dataset()
            token = world.suite.token
            assert token is not None
            for client in (a[3], a[6]):
                s = Sender(world.w3, client)
                s.transact(token.functions.mint(client.address, 10**24))
                s.transact(token.functions.approve(world.suite.market.address, 2**256 - 1))
            cls.world = world
            cls.snapshot = world.w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]
        else:
            cls.world.w3.provider.ethereum_tester.revert_to_snapshot(cls.snapshot)  # type: ignore[attr-defined]
        return cls.world


class MarketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = _Base.get()
        a = self.w.accounts
        self.clients = [a[3], a[6]]
        self.outsider = a[9]  # holds no role at all
        self.workers = {a[5].address: (a[4], a[5], 8, 10**18), a[8].address: (a[7], a[8], 2, 2 * COLLATERAL_PER_GPU)}
        self.token = self.w.suite.token.address  # type: ignore[union-attr]
        self.jobs: dict[int, ModelJob] = {}
        self.credits: dict[tuple[str, str], int] = {}
        self.paid: dict[tuple[str, str], int] = {}
        self.credited_total: dict[tuple[str, str], int] = {}
        self.stake = {addr: info[3] for addr, info in self.workers.items()}
        self.grants: dict[tuple[int, str], int] = {}
        self.terminal: dict[int, JobState] = {}

    # ------------------------------------------------------------ helpers
    def _now(self) -> int:
        return self.w.now()

    def _try(self, expected: bool, sender: Any, fn: Any, value: int = 0) -> bool:
        try:
            Sender(self.w.w3, sender).transact(fn, value=value)
            ok = True
        except ContractRevertError as exc:
            ok = False
            error = exc
        assert ok == expected, f"{fn.fn_name}: model expected {'success' if expected else 'revert'}" + (
            "" if ok else f", got {error}"
        )
        return ok

    def _credit(self, token: str, account: str, amount: int) -> None:
        key = (token, account)
        self.credits[key] = self.credits.get(key, 0) + amount
        self.credited_total[key] = self.credited_total.get(key, 0) + amount

    def _operator(self, worker: str) -> str:
        return str(self.workers[worker][0].address)

    def _locked(self, worker: str) -> int:
        return sum(j.gpus * COLLATERAL_PER_GPU for j in self.jobs.values() if j.worker == worker and j.state in ACTIVE)

    def _job_ids(self) -> list[int]:
        return sorted(self.jobs)

    def _set(self, job_id: int, state: JobState) -> None:
        job = self.jobs[job_id]
        job.state = state
        job.since = self._now()
        if state.terminal:
            self.terminal[job_id] = state

    # ------------------------------------------------------------ rules
    @rule(client=st.integers(0, 1), gpus=st.sampled_from([1, 2, 8]), erc20=st.booleans(), short=st.booleans(), amount=st.integers(1, 10**18))
    def post(self, client: int, gpus: int, erc20: bool, short: bool, amount: int) -> None:
        account = self.clients[client]
        token = self.token if erc20 else ZERO_ADDRESS
        deadline = self._now() + (600 if short else 10 * 24 * 3600)
        request = self.w.request(gpu_count=gpus, token=token, amount=amount, deadline=deadline, challenge_window=WINDOW)
        job_id, _ = self.w.act(account).post_job(request)
        assert job_id == len(self.jobs) + 1
        self.jobs[job_id] = ModelJob(account.address, token, amount, gpus, deadline, since=self._now())

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), by_client=st.booleans())
    def cancel(self, data: st.DataObject, by_client: bool) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        sender = next(c for c in self.clients if c.address == job.client) if by_client else self.outsider
        expected = by_client and job.state == JobState.OPEN
        if self._try(expected, sender, self.w.suite.market.functions.cancel(job_id)):
            self._set(job_id, JobState.CANCELLED)
            self._credit(job.token, job.client, job.escrow)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), which=st.integers(0, 1), own_operator=st.booleans())
    def assign(self, data: st.DataObject, which: int, own_operator: bool) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        worker = list(self.workers)[which]
        operator, _, gpus, _ = self.workers[worker]
        sender = operator if own_operator else self.outsider
        free = self.stake[worker] - self._locked(worker)
        expected = (
            job.state == JobState.OPEN
            and self._now() < job.deadline
            and own_operator
            and gpus >= job.gpus
            and free >= job.gpus * COLLATERAL_PER_GPU
        )
        if self._try(expected, sender, self.w.suite.market.functions.assign(job_id, worker)):
            job.worker = worker
            self._set(job_id, JobState.ASSIGNED)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), right_worker=st.booleans())
    def grant(self, data: st.DataObject, right_worker: bool) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        worker = job.worker if (right_worker and job.worker) else self.outsider.address
        now = self._now()
        active = self.grants.get((job_id, worker), 0) >= now + 5
        fn = self.w.suite.datasets.functions.grantAccess(self.w.dataset_id, job_id, worker, now + GRANT_TTL, b"\x09" * 80)
        if self._try(not active, self.w.owner, fn):
            self.grants[(job_id, worker)] = now + GRANT_TTL
            if job.state == JobState.ASSIGNED and worker == job.worker:
                self._set(job_id, JobState.RUNNING)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), forgery=st.sampled_from(["none", "stranger", "chain", "market", "job"]))
    def submit(self, data: st.DataObject, forgery: str) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        worker = job.worker or self.w.worker
        signer = self.workers[worker][1]
        att = self.w.attestation(job_id, worker=worker)
        if forgery == "job":
            att = self.w.attestation(job_id + 1000, worker=worker)
        key = self.outsider if forgery == "stranger" else signer
        chain = self.w.conn.chain_id + (1 if forgery == "chain" else 0)
        market = self.w.suite.workers.address if forgery == "market" else self.w.suite.market.address
        signature = self.w.sign(att, key=key, chain_id=chain, market=market)
        expected = job.state == JobState.RUNNING and self._now() <= job.deadline and forgery == "none"
        fn = self.w.suite.market.functions.submitResult(job_id, att.as_tuple(), signature)
        if self._try(expected, self.outsider, fn):
            self._set(job_id, JobState.SUBMITTED)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), by_client=st.booleans())
    def accept(self, data: st.DataObject, by_client: bool) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        sender = next(c for c in self.clients if c.address == job.client) if by_client else self.outsider
        expected = by_client and job.state == JobState.SUBMITTED
        if self._try(expected, sender, self.w.suite.market.functions.accept(job_id)):
            self._settle(job_id)

    def _settle(self, job_id: int) -> None:
        job = self.jobs[job_id]
        assert job.worker is not None
        self._set(job_id, JobState.SETTLED)
        self._credit(job.token, self._operator(job.worker), job.escrow)

    def _refund(self, job_id: int, state: JobState, slash: bool) -> None:
        job = self.jobs[job_id]
        assert job.worker is not None
        self._set(job_id, state)
        self._credit(job.token, job.client, job.escrow)
        if slash:
            amount = job.gpus * COLLATERAL_PER_GPU
            self._credit(ZERO_ADDRESS, job.client, amount)
            self.stake[job.worker] -= amount

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def dispute(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        sender = next(c for c in self.clients if c.address == job.client)
        expected = job.state == JobState.SUBMITTED and self._now() <= job.since + WINDOW
        if self._try(expected, sender, self.w.suite.market.functions.dispute(job_id, b"\x01" * 32)):
            self._set(job_id, JobState.DISPUTED)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), worker_wins=st.booleans(), by_arbiter=st.booleans())
    def resolve(self, data: st.DataObject, worker_wins: bool, by_arbiter: bool) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        sender = self.w.arbiter if by_arbiter else self.clients[0]
        expected = by_arbiter and job.state == JobState.DISPUTED
        if self._try(expected, sender, self.w.suite.market.functions.resolveDispute(job_id, worker_wins)):
            if worker_wins:
                self._settle(job_id)
            else:
                self._refund(job_id, JobState.REFUNDED, slash=True)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def finalize(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        expected = job.state == JobState.SUBMITTED and self._now() > job.since + WINDOW
        if self._try(expected, self.outsider, self.w.suite.market.functions.finalize(job_id)):
            self._settle(job_id)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def reclaim(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        expected = job.state in (JobState.ASSIGNED, JobState.RUNNING) and self._now() > job.deadline
        was_running = job.state == JobState.RUNNING
        if self._try(expected, self.outsider, self.w.suite.market.functions.reclaim(job_id)):
            self._refund(job_id, JobState.EXPIRED, slash=was_running)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def timeout_grant(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        expected = job.state == JobState.ASSIGNED and self._now() > job.since + GRANT_TIMEOUT
        if self._try(expected, self.outsider, self.w.suite.market.functions.timeoutGrant(job_id)):
            job.worker = None
            self._set(job_id, JobState.OPEN)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), who=st.sampled_from(["operator", "signer", "stranger"]))
    def report_failure(self, data: st.DataObject, who: str) -> None:
        job_id = data.draw(st.sampled_from(self._job_ids()))
        job = self.jobs[job_id]
        if job.worker is None:
            sender = self.outsider
        else:
            operator, signer, _, _ = self.workers[job.worker]
            sender = {"operator": operator, "signer": signer, "stranger": self.outsider}[who]
        expected = job.state in (JobState.ASSIGNED, JobState.RUNNING) and job.worker is not None and who != "stranger"
        if self._try(expected, sender, self.w.suite.market.functions.reportFailure(job_id, 1, b"\x02" * 32)):
            self._refund(job_id, JobState.FAILED, slash=False)

    @rule(account=st.sampled_from([3, 6, 4, 7, 1]), erc20=st.booleans())
    def withdraw(self, account: int, erc20: bool) -> None:
        sender = self.w.accounts[account]
        token = self.token if erc20 else ZERO_ADDRESS
        key = (token, sender.address)
        owed = self.credits.get(key, 0)
        if self._try(owed > 0, sender, self.w.suite.market.functions.withdraw(token)):
            self.paid[key] = self.paid.get(key, 0) + owed
            self.credits[key] = 0

    @rule(seconds=st.sampled_from([60, 4000, GRANT_TIMEOUT + 500, 11 * 24 * 3600]))
    def advance(self, seconds: int) -> None:
        self.w.advance(seconds)

    # ------------------------------------------------------------ invariants
    @invariant()
    def balances_equal_escrow_plus_credits(self) -> None:
        market = self.w.suite.market
        for token in (ZERO_ADDRESS, self.token):
            escrow = sum(j.escrow for j in self.jobs.values() if j.token == token and not j.state.terminal)
            owed = sum(v for (t, _), v in self.credits.items() if t == token)
            if token == ZERO_ADDRESS:
                balance = self.w.balance(market.address)
            else:
                balance = self.w.suite.token.functions.balanceOf(market.address).call()  # type: ignore[union-attr]
            assert balance == escrow + owed, f"market holds {balance} of {token}, owes {escrow} + {owed}"
        for (token, account), owed in self.credits.items():
            assert market.functions.credits(token, account).call() == owed

    @invariant()
    def stakes_and_locks_match(self) -> None:
        registry_balance = self.w.balance(self.w.suite.workers.address)
        assert registry_balance == sum(self.stake.values())
        for worker in self.workers:
            record = self.w.worker_record(worker)
            assert (record[8], record[9]) == (self.stake[worker], self._locked(worker))

    @invariant()
    def states_match_and_terminal_states_hold(self) -> None:
        for job_id, job in self.jobs.items():
            on_chain = self.w.job(job_id)
            assert on_chain.state == job.state, f"job {job_id}: chain {on_chain.state!r}, model {job.state!r}"
            if job_id in self.terminal:
                assert on_chain.state == self.terminal[job_id]
            assert on_chain.worker == (job.worker or ZERO_ADDRESS) or job.state.terminal

    @invariant()
    def nobody_is_paid_more_than_credited(self) -> None:
        for key, paid in self.paid.items():
            assert paid <= self.credited_total.get(key, 0)


MarketMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LLMOS_STATEFUL_EXAMPLES", "25")),
    stateful_step_count=int(os.environ.get("LLMOS_STATEFUL_STEPS", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("LLMOS_STATEFUL_RANDOM") != "1",
)
TestMarketStateful = pytest.mark.slow(MarketMachine.TestCase)
