"""Property-based stateful test: random parties play the market; a model of money and facts checks what users rely on.

The model is written from the economics, not from the contract's code. It tracks money (every deposit, escrow,
bond, credit, stake and payout) and facts (who holds which job, whether and since when a worker held the data,
when a result or a failure claim came, when a dispute was opened) and the deadlines each party was promised.
Each action is first dry-run (`eth_call` on the pending block, i.e. at the very second the transaction will be
mined) and the model says whether the parties' promises require it to work or to fail; then it is mined and its
money consequences are booked. The properties checked:

- no slash without a fair chance to work: a worker loses collateral only if it was granted the data and either its
  `runTime` passed since the grant without a result or failure claim, or the arbiter ruled against it;
- a worker that held the data past its run time without a result is slashed once someone reclaims, and its failure
  report is refused from then on;
- every dispute ends by its deadline: the arbiter can rule up to and including it, anyone finalizes strictly after;
- every token's balance (and the market's ETH) equals open escrows + bonds held + credits, and equals everything
  that came in minus everything paid out: nothing appears or vanishes; the registry holds exactly the stakes;
- locked collateral ≤ stake, and locked collateral and `activeJobs` match the jobs each worker is on the hook for;
- no job is stuck: from every live state some party can move it now, and a bystander can move it once the
  promised deadline of the silent party has passed (dry-run at that second);
- attestations signed by anyone but the worker's current signer, or for another job, chain or market, fail.

Time moves to the boundaries of the live jobs (latest start, grant + runTime, grant timeout, retake bar, challenge
window, dispute deadline, unbonding end), exactly and one second either side.

Run length: HYPOTHESIS_PROFILE=ci (or CI set in the environment) runs ≥ 10,000 steps; the default ("dev") is a short
local run. LLMOS_STATEFUL_EXAMPLES / LLMOS_STATEFUL_STEPS override either.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import eth  # noqa: F401  (py-evm raises the recursion limit on import; doing it here keeps Hypothesis from warning)
import hypothesis.strategies as st
import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from llmos_chain.attestation import Attestation, sign
from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import _is_revert, _revert_data, decode_revert
from llmos_chain.chain.market import JobState, JobTerms, WorkerParams, ZERO_ADDRESS
from llmos_chain.errors import ContractRevertError
from tests.helpers import BASE, RECIPE, ROOT, World, deploy_world, h

ETH = ZERO_ADDRESS
COLLATERAL = 10**16
GRANT_TIMEOUT = 2 * 3600
DISPUTE_WINDOW = 24 * 3600
DISPUTE_BOND = 2 * 10**16
UNBONDING = 2 * 24 * 3600
W2_STAKE = 3 * COLLATERAL
GAS = 3_000_000
DAY = 24 * 3600
OPEN, ASSIGNED, RUNNING = JobState.OPEN, JobState.ASSIGNED, JobState.RUNNING
SUBMITTED, FAILURE_CLAIMED = JobState.SUBMITTED, JobState.FAILURE_CLAIMED
DISPUTED, FAILURE_DISPUTED = JobState.DISPUTED, JobState.FAILURE_DISPUTED
LIVE = (OPEN, ASSIGNED, RUNNING, SUBMITTED, FAILURE_CLAIMED, DISPUTED, FAILURE_DISPUTED)
#: Mostly the right party, sometimes a wrong one (whose call must fail).
RIGHT_PARTY = st.sampled_from([True, True, True, True, False])

PROFILES = {
    "dev": {"max_examples": 10, "stateful_step_count": 40},  # ~400 steps
    # Hypothesis runs a few examples short (it ends some early, and the invariant-only ones), so 15,000 nominal
    # steps come to about 12,000: the test checks that at least 10,000 ran.
    "ci": {"max_examples": 250, "stateful_step_count": 60},
}
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
if PROFILE not in PROFILES:
    PROFILE = "dev"
EXAMPLES = int(os.environ.get("LLMOS_STATEFUL_EXAMPLES", PROFILES[PROFILE]["max_examples"]))
STEPS_PER_EXAMPLE = int(os.environ.get("LLMOS_STATEFUL_STEPS", PROFILES[PROFILE]["stateful_step_count"]))
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS_PER_EXAMPLE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: Steps run, over all examples of one test run (reported, and checked against the CI target).
COUNTER = {"steps": 0, "runs": 0}


# ----------------------------------------------------------------- the model


@dataclass
class WorkerModel:
    address: str
    operator: LocalAccount
    signer: LocalAccount
    spare_signer: LocalAccount  # a key that is not (or no longer) its signer
    gpus: int
    mem: int
    id: int
    stake: int
    status: str = "active"  # active | paused | exiting | exited
    unbonding_end: int = 0


@dataclass
class JobModel:
    job_id: int
    terms: JobTerms
    client: LocalAccount
    opened_at: int  # posted, or reopened
    live: bool = True  # its escrow is still held by the market
    outcome: JobState | None = None
    holder: int | None = None  # the worker id on the hook (assigned, granted, claiming)
    assigned_at: int | None = None
    granted_at: int | None = None
    result_at: int | None = None
    failure_at: int | None = None
    disputed_at: int | None = None
    barred: tuple[int, int] | None = None  # (worker id, first second it may take the job again)

    @property
    def latest_start(self) -> int:
        return self.terms.deadline - self.terms.run_time

    @property
    def collateral(self) -> int:
        return self.terms.gpu_count * COLLATERAL

    @property
    def claim_at(self) -> int | None:
        return self.result_at if self.result_at is not None else self.failure_at

    @property
    def token(self) -> str:
        return self.terms.token

    def expected_state(self) -> JobState:
        """What the chain must report, named from the facts."""
        if not self.live:
            assert self.outcome is not None
            return self.outcome
        if self.holder is None:
            return JobState.OPEN
        if self.granted_at is None:
            return JobState.ASSIGNED
        if self.claim_at is None:
            return JobState.RUNNING
        if self.disputed_at is None:
            return JobState.SUBMITTED if self.result_at is not None else JobState.FAILURE_CLAIMED
        return JobState.DISPUTED if self.result_at is not None else JobState.FAILURE_DISPUTED

    def since(self) -> int:
        """When the fact that the current state rests on began (what the promised deadlines count from)."""
        for t in (self.disputed_at, self.claim_at, self.granted_at, self.assigned_at):
            if t is not None:
                return t
        return self.opened_at


class _Base:
    """One deployment shared by every example; each example starts from its snapshot."""

    world: World | None = None
    snapshot: Any = None

    @classmethod
    def get(cls) -> World:
        if cls.world is None:
            world = deploy_world(connect(), collateral_per_gpu_wei=COLLATERAL, grant_timeout_s=GRANT_TIMEOUT,
                                 dispute_window_s=DISPUTE_WINDOW, dispute_bond_wei=DISPUTE_BOND, unbonding_delay_s=UNBONDING)
            a = world.accounts
            world.register_worker(operator=a[4], worker_key=a[5], gpus=8, mem=80, stake=10**18)  # W1, id 1
            world.register_worker(operator=a[7], worker_key=a[8], gpus=2, mem=24, stake=W2_STAKE)  # W2, id 2
            world.register_dataset(owner=a[2])
            for client in (a[3], a[2]):
                world.client_key_id(client)
                world.fund_token(client)
            # Keep the chain a day ahead of the wall clock: every block time is then the one the test chose.
            world.at(world.next_time() + DAY)
            world.advance(1)
            cls.world = world
            cls.snapshot = world.w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]
        else:
            cls.world.w3.provider.ethereum_tester.revert_to_snapshot(cls.snapshot)  # type: ignore[attr-defined]
        return cls.world


class MarketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = w = _Base.get()
        COUNTER["runs"] += 1
        a = w.accounts
        self.tester = w.w3.provider.ethereum_tester  # type: ignore[attr-defined]
        self.market = w.suite.market
        self.registry = w.suite.workers
        self.token = w.suite.token
        assert self.token is not None
        self.owner = a[2]  # owns the dataset, and is one of the two clients
        self.clients = [a[3], a[2]]
        self.arbiter = a[1]
        self.outsider = a[9]
        self.key_ids = {c.address: w.client_key_id(c) for c in self.clients}
        self.workers = [
            WorkerModel(a[5].address, a[4], a[5], a[6], 8, 80, 1, 10**18),
            WorkerModel(a[8].address, a[7], a[8], a[6], 2, 24, 2, W2_STAKE),
        ]
        self.jobs: dict[int, JobModel] = {}
        self.ticks = 0
        # money, per token: what came in, what went out, and what the market owes
        self.inflow = {ETH: 0, self.token.address: 0}
        self.outflow = {ETH: 0, self.token.address: 0}
        self.credits: dict[tuple[str, str], int] = {}
        self.stakes_in = sum(wm.stake for wm in self.workers)
        self.stakes_out = 0  # slashed (to the market) or withdrawn (to operators)
        self.nonces = {acct.address: int(w.w3.eth.get_transaction_count(acct.address)) for acct in a}
        self.fees = {"maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9, "chainId": w.conn.chain_id}
        assert w.next_time() > time.time() + 3600, "the chain must run ahead of the wall clock"

    # ------------------------------------------------------------ plumbing
    def _now(self) -> int:
        """The second the next transaction (and a dry run on the pending block) executes at."""
        return self.w.next_time()

    def _dry_run(self, sender: LocalAccount, fn: Any, value: int = 0) -> ContractRevertError | None:
        try:
            fn.call({"from": sender.address, "value": value, "gas": GAS}, block_identifier="pending")
        except Exception as exc:
            if not _is_revert(exc):
                raise
            return decode_revert(fn.fn_name, _revert_data(exc))
        return None

    def _act(self, sender: LocalAccount, fn: Any, expect: bool, why: str, value: int = 0, error: str | None = None) -> Any:
        """Dry-run `fn`; it must work iff `expect`. When it works, mine it at the dry run's second; returns the receipt."""
        t = self._now()
        failure = self._dry_run(sender, fn, value)
        if expect:
            assert failure is None, f"{fn.fn_name} at t={t} must work ({why}), but reverted: {failure}"
        else:
            assert failure is not None, f"{fn.fn_name} at t={t} must revert ({why}), but it would succeed"
            if error is not None:
                assert failure.name == error, f"{fn.fn_name} at t={t} ({why}): expected {error}, got {failure}"
            return None
        tx = fn.build_transaction({"from": sender.address, "value": value, "gas": GAS, "nonce": self.nonces[sender.address], **self.fees})
        self.nonces[sender.address] += 1
        w3 = self.w.w3
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, f"{fn.fn_name} passed its dry run but failed when mined"
        assert self.w.mined_at(receipt) == t, "the transaction was not mined at the second it was dry-run at"
        return receipt

    def _pick(self, data: st.DataObject, *phases: JobState) -> JobModel:
        """Mostly a job in one of `phases` (where the action means something), sometimes any job (where it must fail)."""
        fitting = [j for j in sorted(self.jobs) if self.jobs[j].expected_state() in phases]
        pool = fitting if fitting and data.draw(st.integers(0, 4), label="fitting job") > 0 else sorted(self.jobs)
        job = self.jobs[data.draw(st.sampled_from(pool), label="job")]
        self._maybe_jump(data, [limit for limit, _ in self._deadlines(job)] if job.live else [])
        return job

    def _maybe_jump(self, data: st.DataObject, limits: list[int]) -> None:
        """Often act right now; otherwise at exactly one of `limits`, or one second before or after it."""
        targets = sorted({limit + d for limit in limits for d in (-1, 0, 1) if limit + d >= self._now()})
        if targets and data.draw(st.integers(0, 2), label="at a limit") == 0:
            self.w.at(data.draw(st.sampled_from(targets), label="limit"))

    def _worker(self, worker_id: int | None) -> WorkerModel | None:
        return next((wm for wm in self.workers if wm.id == worker_id), None)

    def _held(self, worker_id: int) -> list[JobModel]:
        return [j for j in self.jobs.values() if j.live and j.holder == worker_id]

    def _credit(self, token: str, account: str, amount: int) -> None:
        if amount:
            key = (token, account)
            self.credits[key] = self.credits.get(key, 0) + amount

    def _terms(self, job: JobModel) -> tuple[Any, ...]:
        return job.terms.as_tuple()

    # consequences, booked from the economics of each outcome
    def _release(self, job: JobModel) -> None:
        job.holder = None
        job.assigned_at = job.granted_at = job.result_at = job.failure_at = job.disputed_at = None

    def _reopen(self, job: JobModel, t: int) -> None:
        """The holder gave the job back (or lost it) before it ever saw the data: no money moves."""
        assert job.holder is not None and job.granted_at is None
        job.barred = (job.holder, t + GRANT_TIMEOUT)
        job.opened_at = t
        self._release(job)

    def _end(self, job: JobModel, outcome: JobState) -> None:
        job.live = False
        job.outcome = outcome
        job.holder = None

    def _bond_back_to(self, job: JobModel) -> int:
        return DISPUTE_BOND if job.disputed_at is not None else 0

    def _worker_paid(self, job: JobModel) -> None:
        """A result stands: the escrow (and a bond, if the result was disputed) goes to the holder's operator."""
        wm = self._worker(job.holder)
        assert wm is not None
        self._credit(job.token, wm.operator.address, job.terms.amount)
        self._credit(ETH, wm.operator.address, self._bond_back_to(job))
        self._end(job, JobState.SETTLED)

    def _failure_stands(self, job: JobModel) -> None:
        """A failure claim stands: the client gets its escrow back, the worker keeps its collateral (and wins a bond)."""
        wm = self._worker(job.holder)
        assert wm is not None
        self._credit(job.token, job.terms.client, job.terms.amount)
        self._credit(ETH, wm.operator.address, self._bond_back_to(job))
        self._end(job, JobState.FAILED)

    def _slash(self, job: JobModel, outcome: JobState, justified: str) -> None:
        """The worker loses the job's collateral to the client. Only ever called with the fact that justifies it."""
        wm = self._worker(job.holder)
        assert wm is not None and job.granted_at is not None, "no slash without a grant"
        assert justified in ("run time over without a result", "the arbiter ruled against the worker")
        self._credit(job.token, job.terms.client, job.terms.amount)
        self._credit(ETH, job.terms.client, job.collateral + self._bond_back_to(job))
        wm.stake -= job.collateral
        self.stakes_out += job.collateral
        self.inflow[ETH] += job.collateral  # the registry sends the collateral to the market
        self._end(job, outcome)

    # ------------------------------------------------------------ clients
    JOB_SHAPE = dict(
        client=st.sampled_from([0, 1]),
        erc20=st.booleans(),
        gpus=st.sampled_from([1, 2, 3, 8]),
        mem=st.sampled_from([16, 40]),
        # the most ordinary value first: Hypothesis starts (and shrinks) towards it
        run_time=st.sampled_from([3600, 600, 5 * 3600]),
        slack=st.sampled_from([2 * DAY, 5 * DAY, 3 * 3600, 2 * DAY, 1, 0]),
        window=st.sampled_from([3600, 60, 0]),
        amount=st.integers(1, 10**18),
    )

    @initialize(jobs=st.lists(st.fixed_dictionaries(JOB_SHAPE), min_size=1, max_size=4))
    def some_jobs(self, jobs: list[dict[str, Any]]) -> None:
        for shape in jobs:
            self._post(**shape, too_short=False)

    @rule(**JOB_SHAPE, too_short=st.sampled_from([False, False, False, False, True]))
    def post(self, **shape: Any) -> None:
        self._post(**shape)

    def _post(self, client: int, erc20: bool, gpus: int, mem: int, run_time: int, slack: int, window: int, amount: int,
              too_short: bool) -> None:
        account = self.clients[client]
        token = self.token.address if erc20 else ETH
        t = self._now()
        deadline = t + run_time + slack - (slack + 1 if too_short else 0)
        terms = JobTerms(account.address, self.owner.address, token, amount, self.w.dataset_id, self.key_ids[account.address],
                         gpus, mem, deadline, run_time, window)
        request = (terms.dataset_id, BASE, RECIPE, "file:///recipe.json", gpus, mem, deadline, run_time, window, token, amount,
                   terms.client_key_id)
        # A post must leave at least one fair run window before its deadline, or no worker could ever run it.
        receipt = self._act(account, self.market.functions.postJob(request), not too_short, "a full run window fits",
                            value=amount if token == ETH else 0, error="JobInvalidRequest")
        if receipt is None:
            return
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = JobModel(job_id, terms, account, opened_at=t)
        self.inflow[token] += amount
        self._check_job(self.jobs[job_id])

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), who=st.sampled_from(["client", "client", "client", "owner", "outsider"]))
    def cancel(self, data: st.DataObject, who: str) -> None:
        job = self._pick(data, OPEN, ASSIGNED)
        self._cancel(job, {"client": job.client, "owner": self.owner, "outsider": self.outsider}[who])

    def _cancel(self, job: JobModel, sender: LocalAccount) -> None:
        # The client may take back any job nobody was granted; once a worker holds the data, never.
        expect = sender.address == job.terms.client and job.live and job.granted_at is None
        holder = job.holder
        if self._act(sender, self.market.functions.cancel(job.job_id, self._terms(job)), expect, "nobody was granted yet"):
            self._credit(job.token, job.terms.client, job.terms.amount)
            self._end(job, JobState.CANCELLED)
            self._after(job, holder)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), by_client=RIGHT_PARTY)
    def accept(self, data: st.DataObject, by_client: bool) -> None:
        job = self._pick(data, SUBMITTED, FAILURE_CLAIMED)
        self._accept(job, job.client if by_client else self.outsider)

    def _accept(self, job: JobModel, sender: LocalAccount) -> None:
        expect = sender.address == job.terms.client and job.live and job.claim_at is not None and job.disputed_at is None
        holder = job.holder
        if self._act(sender, self.market.functions.accept(job.job_id, self._terms(job)), expect, "the client takes a pending claim"):
            if job.result_at is not None:
                self._worker_paid(job)
            else:
                self._failure_stands(job)
            self._after(job, holder)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), bond=st.sampled_from(["exact", "exact", "exact", "none", "short"]), by_client=RIGHT_PARTY)
    def dispute(self, data: st.DataObject, bond: str, by_client: bool) -> None:
        job = self._pick(data, SUBMITTED, FAILURE_CLAIMED)
        self._dispute(job, job.client if by_client else self.outsider, {"exact": DISPUTE_BOND, "none": 0, "short": DISPUTE_BOND - 1}[bond])

    def _dispute(self, job: JobModel, sender: LocalAccount, paid: int) -> None:
        t = self._now()
        in_window = job.claim_at is not None and t <= job.claim_at + job.terms.challenge_window
        expect = sender.address == job.terms.client and job.live and job.disputed_at is None and in_window and paid == DISPUTE_BOND
        fn = self.market.functions.dispute(job.job_id, self._terms(job), h("reason"))
        if self._act(sender, fn, expect, "the client challenges within the window, paying the bond", value=paid):
            job.disputed_at = t
            self.inflow[ETH] += DISPUTE_BOND
            self._after(job, job.holder)

    # ------------------------------------------------------------ workers
    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), which=st.sampled_from([0, 1]), own_operator=RIGHT_PARTY)
    def assign(self, data: st.DataObject, which: int, own_operator: bool) -> None:
        job = self._pick(data, OPEN)
        wm = self.workers[which]
        self._assign(job, wm, wm.operator if own_operator else self.outsider)

    def _may_assign(self, job: JobModel, wm: WorkerModel, sender: LocalAccount) -> bool:
        t = self._now()
        locked = sum(j.collateral for j in self._held(wm.id))
        fits = job.terms.gpu_count <= wm.gpus and job.terms.gpu_mem_gib <= wm.mem
        barred = job.barred is not None and job.barred[0] == wm.id and t < job.barred[1]
        return (
            job.live and job.holder is None and sender.address == wm.operator.address and wm.status == "active" and fits
            and wm.stake - locked >= job.collateral
            and t <= job.latest_start  # a worker is never handed a job it could not run for its full time
            and not barred  # a worker that gave the job back without a grant waits one grant timeout
        )

    def _assign(self, job: JobModel, wm: WorkerModel, sender: LocalAccount) -> None:
        t = self._now()
        fn = self.market.functions.assign(job.job_id, self._terms(job), wm.id)
        if self._act(sender, fn, self._may_assign(job, wm, sender), "an active, fitting worker with free stake, in time, not barred"):
            job.holder = wm.id
            job.assigned_at = t
            self._after(job, wm.id)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), forgery=st.sampled_from(["none", "none", "none", "spare_key", "operator_key", "outsider_key", "chain", "market", "job", "worker"]))
    def submit(self, data: st.DataObject, forgery: str) -> None:
        self._submit(self._pick(data, RUNNING), forgery)

    def _submit(self, job: JobModel, forgery: str) -> None:
        wm = self._worker(job.holder) or self.workers[0]
        t = self._now()
        end = t - 1
        worker = self.outsider.address if forgery == "worker" else wm.address
        job_id = job.job_id + 1000 if forgery == "job" else job.job_id
        att = Attestation(job_id, worker, ROOT, BASE, RECIPE, h(f"out-{job.job_id}"), h("metrics"), h("trajectory"), end - 1, end)
        key = {"spare_key": wm.spare_signer, "operator_key": wm.operator, "outsider_key": self.outsider}.get(forgery, wm.signer)
        chain = self.w.conn.chain_id + (1 if forgery == "chain" else 0)
        market = self.registry.address if forgery == "market" else self.market.address
        signature = sign(att, key, chain, market)
        in_window = job.granted_at is not None and t <= job.granted_at + job.terms.run_time
        # Only the worker's current signer attests, for this job, this chain, this market; only in the run window.
        expect = job.live and in_window and job.claim_at is None and forgery == "none"
        fn = self.market.functions.submitResult(job.job_id, self._terms(job), att.as_tuple(), signature)
        if self._act(self.outsider, fn, expect, f"a valid attestation in the run window (anyone relays); forgery: {forgery}"):
            job.result_at = t
            self._after(job, job.holder)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), who=st.sampled_from(["operator", "operator", "signer", "signer", "spare_key", "outsider"]))
    def report_failure(self, data: st.DataObject, who: str) -> None:
        job = self._pick(data, ASSIGNED, RUNNING)
        wm = self._worker(job.holder) or self.workers[0]
        self._report_failure(job, {"operator": wm.operator, "signer": wm.signer, "spare_key": wm.spare_signer, "outsider": self.outsider}[who])

    def _report_failure(self, job: JobModel, sender: LocalAccount) -> None:
        wm = self._worker(job.holder)
        authority = wm is not None and sender.address in (wm.operator.address, wm.signer.address)
        t = self._now()
        fn = self.market.functions.reportFailure(job.job_id, self._terms(job), 3, h("why"))
        holder = job.holder
        if not job.live or job.holder is None or job.claim_at is not None:
            self._act(sender, fn, False, "nothing to report on")
        elif job.granted_at is None:
            # Before the grant the worker has seen nothing: it may give the job back, at no cost to anyone.
            if self._act(sender, fn, authority, "the holder gives an ungranted job back"):
                self._reopen(job, t)
                self._after(job, holder)
        elif t <= job.granted_at + job.terms.run_time:
            if self._act(sender, fn, authority, "the holder reports a failure within its run time"):
                job.failure_at = t
                self._after(job, holder)
        else:
            # It held the data past its run time without a result: no excuse any more, it will be slashed.
            self._act(sender, fn, False, "the run time is over", error="JobRunTimeOver" if authority else None)

    # ------------------------------------------------------------ dataset owner
    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), by_owner=RIGHT_PARTY, empty_key=st.sampled_from([False, False, False, False, True]))
    def grant(self, data: st.DataObject, by_owner: bool, empty_key: bool) -> None:
        self._grant(self._pick(data, ASSIGNED), self.owner if by_owner else self.outsider, empty_key)

    def _grant(self, job: JobModel, sender: LocalAccount, empty_key: bool = False) -> None:
        t = self._now()
        # A grant must leave the worker its full run time before the deadline.
        expect = (job.live and job.holder is not None and job.granted_at is None and sender.address == job.terms.dataset_owner
                  and not empty_key and t + job.terms.run_time <= job.terms.deadline)
        fn = self.market.functions.grantAccess(job.job_id, self._terms(job), b"" if empty_key else b"\x09" * 80)
        if self._act(sender, fn, expect, "the owner grants an assigned job while a full run still fits"):
            job.granted_at = t
            self._after(job, job.holder)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), who=st.sampled_from(["client", "owner", "client", "owner", "operator", "outsider"]))
    def drop_assignment(self, data: st.DataObject, who: str) -> None:
        job = self._pick(data, ASSIGNED)
        wm = self._worker(job.holder) or self.workers[0]
        self._drop(job, {"client": job.client, "owner": self.owner, "operator": wm.operator, "outsider": self.outsider}[who])

    def _drop(self, job: JobModel, sender: LocalAccount) -> None:
        may = sender.address in (job.terms.client, job.terms.dataset_owner)
        expect = may and job.live and job.holder is not None and job.granted_at is None
        holder = job.holder
        t = self._now()
        if self._act(sender, self.market.functions.dropAssignment(job.job_id, self._terms(job)), expect, "client or owner frees an ungranted job"):
            self._reopen(job, t)
            self._after(job, holder)

    # ------------------------------------------------------------ anyone / arbiter
    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def timeout_grant(self, data: st.DataObject) -> None:
        self._timeout_grant(self._pick(data, ASSIGNED))

    def _timeout_grant(self, job: JobModel) -> None:
        t = self._now()
        expect = job.live and job.holder is not None and job.granted_at is None and t > (job.assigned_at or 0) + GRANT_TIMEOUT
        holder = job.holder
        if self._act(self.outsider, self.market.functions.timeoutGrant(job.job_id, self._terms(job)), expect, "the owner let the grant time out"):
            self._reopen(job, t)
            self._after(job, holder)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def reclaim(self, data: st.DataObject) -> None:
        self._reclaim(self._pick(data, ASSIGNED, RUNNING))

    def _reclaim(self, job: JobModel) -> None:
        t = self._now()
        holder = job.holder
        fn = self.market.functions.reclaim(job.job_id, self._terms(job))
        if job.live and job.granted_at is not None and job.claim_at is None:
            overdue = t > job.granted_at + job.terms.run_time
            if self._act(self.outsider, fn, overdue, "the worker held the data for its whole run time without a result"):
                self._slash(job, JobState.EXPIRED, "run time over without a result")
                self._after(job, holder)
        elif job.live and job.holder is not None and job.granted_at is None:
            # Nobody can start it fairly any more: the client gets its money back, the worker is not at fault.
            if self._act(self.outsider, fn, t > job.latest_start, "no fair start is possible any more"):
                self._credit(job.token, job.terms.client, job.terms.amount)
                self._end(job, JobState.EXPIRED)
                self._after(job, holder)
        else:
            self._act(self.outsider, fn, False, "nothing to reclaim")

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def finalize(self, data: st.DataObject) -> None:
        self._finalize(self._pick(data, SUBMITTED, FAILURE_CLAIMED, DISPUTED, FAILURE_DISPUTED))

    def _finalize(self, job: JobModel) -> None:
        t = self._now()
        claim = job.claim_at
        window_over = claim is not None and job.disputed_at is None and t > claim + job.terms.challenge_window
        dispute_over = job.disputed_at is not None and t > job.disputed_at + DISPUTE_WINDOW  # the arbiter stayed silent
        holder = job.holder
        if self._act(self.outsider, self.market.functions.finalize(job.job_id, self._terms(job)), job.live and (window_over or dispute_over),
                     "the challenge window or the dispute deadline passed"):
            if job.result_at is not None:
                self._worker_paid(job)
            else:
                self._failure_stands(job)
            self._after(job, holder)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), worker_wins=st.booleans(), by_arbiter=RIGHT_PARTY)
    def resolve(self, data: st.DataObject, worker_wins: bool, by_arbiter: bool) -> None:
        job = self._pick(data, DISPUTED, FAILURE_DISPUTED)
        self._resolve(job, self.arbiter if by_arbiter else job.client, worker_wins)

    def _resolve(self, job: JobModel, sender: LocalAccount, worker_wins: bool) -> None:
        t = self._now()
        by_arbiter = sender.address == self.arbiter.address
        expect = by_arbiter and job.live and job.disputed_at is not None and t <= job.disputed_at + DISPUTE_WINDOW
        holder = job.holder
        fn = self.market.functions.resolveDispute(job.job_id, self._terms(job), worker_wins)
        late = job.live and job.disputed_at is not None and t > job.disputed_at + DISPUTE_WINDOW
        if self._act(sender, fn, expect, "the arbiter rules by the dispute deadline",
                     error="JobDisputeDeadlinePassed" if by_arbiter and late else None):
            if not worker_wins:
                self._slash(job, JobState.REFUNDED, "the arbiter ruled against the worker")
            elif job.result_at is not None:
                self._worker_paid(job)
            else:
                self._failure_stands(job)
            self._after(job, holder)

    @precondition(lambda self: any(j.live for j in self.jobs.values()))
    @rule()
    def advance_the_oldest_job(self) -> None:
        job = next(j for j in self.jobs.values() if j.live)
        self.ticks += 3  # cycles through every choice, in an order that differs per job
        self._advance(job, job.job_id + self.ticks)

    @precondition(lambda self: any(j.live for j in self.jobs.values()))
    @rule(data=st.data(), choice=st.integers(0, 9))
    def advance_a_job(self, data: st.DataObject, choice: int) -> None:
        self._advance(self._pick(data, *LIVE), choice)

    def _advance(self, job: JobModel, choice: int) -> None:
        """A rightful party takes a next step on `job`: mostly the ordinary one (assign, grant, submit, accept, rule),
        sometimes its alternative (cancel, drop, give back, report a failure, dispute), and the exit once the step's
        time is over. Keeps runs reaching deep states; the other rules perturb them."""
        if not job.live:
            return
        t = self._now()
        state = job.expected_state()
        choice %= 10
        if state == OPEN:
            candidates = [wm for wm in self.workers if self._may_assign(job, wm, wm.operator)]
            if candidates and choice:
                wm = candidates[choice % len(candidates)]
                self._assign(job, wm, wm.operator)
            else:
                self._cancel(job, job.client)
        elif state == ASSIGNED:
            holder = self._worker(job.holder)
            assert holder is not None
            if t + job.terms.run_time > job.terms.deadline:
                self._reclaim(job)
            elif choice == 0:
                self._cancel(job, job.client)
            elif choice == 1:
                self._drop(job, self.owner if job.job_id % 2 else job.client)
            elif choice == 2:
                self._report_failure(job, holder.operator)  # the worker gives it back before seeing the data
            else:
                self._grant(job, self.owner)
        elif state == RUNNING:
            holder = self._worker(job.holder)
            assert job.granted_at is not None and holder is not None
            if t > job.granted_at + job.terms.run_time:
                self._reclaim(job)
            elif choice < 3:
                self._report_failure(job, holder.signer if choice else holder.operator)
            else:
                self._submit(job, "none")
        elif state in (SUBMITTED, FAILURE_CLAIMED):
            assert job.claim_at is not None
            if t > job.claim_at + job.terms.challenge_window:
                self._finalize(job)
            elif choice < 4:
                self._dispute(job, job.client, DISPUTE_BOND)
            else:
                self._accept(job, job.client)
        else:
            assert job.disputed_at is not None
            if t > job.disputed_at + DISPUTE_WINDOW:
                self._finalize(job)
            else:
                self._resolve(job, self.arbiter, worker_wins=choice % 2 == 1)

    @rule(account=st.sampled_from([2, 3, 4, 7, 9]), erc20=st.booleans())
    def withdraw(self, account: int, erc20: bool) -> None:
        sender = self.w.accounts[account]
        token = self.token.address if erc20 else ETH
        owed = self.credits.get((token, sender.address), 0)
        before = self._holding(token, sender.address)
        receipt = self._act(sender, self.market.functions.withdraw(token), owed > 0, "a credit is owed")
        if receipt is not None:
            self.credits[(token, sender.address)] = 0
            self.outflow[token] += owed
            fee = receipt["gasUsed"] * receipt["effectiveGasPrice"] if token == ETH else 0
            assert self._holding(token, sender.address) == before + owed - fee, "the payout is not exactly the credit"
            self._check_credits({(token, sender.address)})

    # ------------------------------------------------------------ worker records
    @rule(price=st.integers(0, 10**15))
    def rotate_w1_signer(self, price: int) -> None:
        wm = self.workers[0]
        params = WorkerParams(wm.spare_signer.address, "H100-80GB", wm.gpus, wm.mem, price, b"\x04" * 32)
        self._act(wm.operator, self.registry.functions.update(wm.address, params.as_tuple()), True, "the operator rotates the signer")
        wm.signer, wm.spare_signer = wm.spare_signer, wm.signer

    @rule(data=st.data(), action=st.sampled_from(["pause", "unpause", "requestExit", "withdrawStake", "addStake"]))
    def w2_lifecycle(self, data: st.DataObject, action: str) -> None:
        wm = self.workers[1]
        self._maybe_jump(data, [wm.unbonding_end] if wm.status == "exiting" else [])
        fn = getattr(self.registry.functions, action)(wm.address)
        t = self._now()
        live = wm.status != "exited"
        expect = {
            "pause": wm.status == "active",
            "unpause": wm.status == "paused",
            "requestExit": wm.status in ("active", "paused"),
            # its stake leaves only after unbonding, and never while it is on the hook for a job
            "withdrawStake": wm.status == "exiting" and t >= wm.unbonding_end and not self._held(wm.id),
            "addStake": live,
        }[action]
        value = COLLATERAL if action == "addStake" else 0
        before = self.w.balance(wm.operator.address)
        receipt = self._act(wm.operator, fn, expect, f"{action} from {wm.status}", value=value)
        if receipt is None:
            return
        if action == "pause":
            wm.status = "paused"
        elif action == "unpause":
            wm.status = "active"
        elif action == "requestExit":
            wm.status, wm.unbonding_end = "exiting", t + UNBONDING
        elif action == "addStake":
            wm.stake += COLLATERAL
            self.stakes_in += COLLATERAL
        else:
            fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
            assert self.w.balance(wm.operator.address) == before + wm.stake - fee
            self.stakes_out += wm.stake
            wm.stake, wm.status = 0, "exited"
        self._check_worker(wm.id)

    @precondition(lambda self: self.workers[1].status == "exited")
    @rule()
    def w2_registers_again(self) -> None:
        wm = self.workers[1]
        params = WorkerParams(wm.signer.address, "RTX-4090", wm.gpus, wm.mem, 10**14, b"\x05" * 32)
        old = wm.id
        self._act(wm.operator, self.registry.functions.register(wm.address, params.as_tuple()), True, "an exited worker may return", value=W2_STAKE)
        wm.id = int(self.registry.functions.workerCount().call())
        assert wm.id != old, "a re-registration must get a new id"
        wm.stake, wm.status, wm.unbonding_end = W2_STAKE, "active", 0
        self.stakes_in += W2_STAKE
        self._check_worker(wm.id)
        self._check_worker(old)

    # ------------------------------------------------------------ time
    def _boundaries(self) -> list[int]:
        out: list[int] = []
        for job in self.jobs.values():
            if not job.live:
                continue
            if job.granted_at is None:
                out.append(job.latest_start)
            if job.holder is not None and job.granted_at is None and job.assigned_at is not None:
                out.append(job.assigned_at + GRANT_TIMEOUT)
            if job.holder is None and job.barred is not None:
                out.append(job.barred[1])
            if job.granted_at is not None and job.claim_at is None:
                out.append(job.granted_at + job.terms.run_time)
            if job.claim_at is not None and job.disputed_at is None:
                out.append(job.claim_at + job.terms.challenge_window)
            if job.disputed_at is not None:
                out.append(job.disputed_at + DISPUTE_WINDOW)
        if self.workers[1].status == "exiting":
            out.append(self.workers[1].unbonding_end)
        now = self._now()
        return sorted({b + d for b in out for d in (-1, 0, 1) if b + d >= now})

    @rule(data=st.data())
    def to_a_boundary(self, data: st.DataObject) -> None:
        """The next transaction lands exactly on a live deadline, or one second before or after it."""
        targets = self._boundaries()
        if targets:
            self.w.at(data.draw(st.sampled_from(targets), label="boundary"))

    def _deadlines(self, job: JobModel) -> list[tuple[int, list[tuple[str, Any]]]]:
        """The limits that matter for `job` now, each with the moves of the party that must act by it and of the
        one that may act after it."""
        holder = self._worker(job.holder)
        if job.holder is None:
            out = [(job.latest_start, [(f"assign by W{i + 1}", lambda wm=wm: self._assign(job, wm, wm.operator))
                                       for i, wm in enumerate(self.workers)])]
            if job.barred is not None:
                barred = self._worker(job.barred[0])
                if barred is not None:
                    out.append((job.barred[1], [("retake", lambda: self._assign(job, barred, barred.operator))]))
            return out
        assert holder is not None
        if job.granted_at is None:
            assert job.assigned_at is not None
            late = [("grant", lambda: self._grant(job, self.owner)), ("reclaim", lambda: self._reclaim(job)),
                    ("timeout", lambda: self._timeout_grant(job))]
            return [(job.latest_start, late), (job.assigned_at + GRANT_TIMEOUT, late)]
        if job.claim_at is None:
            return [(job.granted_at + job.terms.run_time, [
                ("submit", lambda: self._submit(job, "none")),
                ("report by the operator", lambda: self._report_failure(job, holder.operator)),
                ("report by the signer", lambda: self._report_failure(job, holder.signer)),
                ("reclaim", lambda: self._reclaim(job)),
            ])]
        if job.disputed_at is None:
            return [(job.claim_at + job.terms.challenge_window, [
                ("dispute", lambda: self._dispute(job, job.client, DISPUTE_BOND)),
                ("finalize", lambda: self._finalize(job)),
                ("accept", lambda: self._accept(job, job.client)),
            ])]
        return [(job.disputed_at + DISPUTE_WINDOW, [
            ("rule for the worker", lambda: self._resolve(job, self.arbiter, True)),
            ("rule against the worker", lambda: self._resolve(job, self.arbiter, False)),
            ("finalize", lambda: self._finalize(job)),
        ])]

    @precondition(lambda self: any(j.live for j in self.jobs.values()))
    @rule(data=st.data(), offset=st.sampled_from([0, 1, -1]))
    def act_at_a_deadline(self, data: st.DataObject, offset: int) -> None:
        """Pick a live job and one of its limits; at exactly that second (or one before or after) its party acts."""
        job = self._pick(data, *LIVE)
        if not job.live:
            return
        limit, moves = data.draw(st.sampled_from(self._deadlines(job)), label="limit")
        target = limit + offset
        if target < self._now():
            return
        self.w.at(target)
        _, move = data.draw(st.sampled_from(moves), label="move")
        move()

    @rule(seconds=st.sampled_from([1, 59, 600, 3600, GRANT_TIMEOUT, DAY]))
    def wait(self, seconds: int) -> None:
        self.w.at(self._now() + seconds)

    # ------------------------------------------------------------ no job is stuck
    def _moves(self, job: JobModel) -> list[tuple[LocalAccount, Any, int]]:
        """Every move any party could make on `job` (each as sender, call, value)."""
        m = self.market.functions
        t = self._terms(job)
        wm = self._worker(job.holder) or self.workers[0]
        end = self._now() - 1
        att = Attestation(job.job_id, wm.address, ROOT, BASE, RECIPE, h("o"), h("m"), h("t"), end - 1, end)
        signature = sign(att, wm.signer, self.w.conn.chain_id, self.market.address)
        return [
            (job.client, m.cancel(job.job_id, t), 0),
            (job.client, m.accept(job.job_id, t), 0),
            (job.client, m.dispute(job.job_id, t, h("r")), DISPUTE_BOND),
            (self.owner, m.grantAccess(job.job_id, t, b"\x01" * 80), 0),
            (self.owner, m.dropAssignment(job.job_id, t), 0),
            (wm.operator, m.reportFailure(job.job_id, t, 1, h("f")), 0),
            (self.outsider, m.submitResult(job.job_id, t, att.as_tuple(), signature), 0),
            (self.arbiter, m.resolveDispute(job.job_id, t, True), 0),
            *self._bystander_moves(job),
        ]

    def _bystander_moves(self, job: JobModel) -> list[tuple[LocalAccount, Any, int]]:
        m = self.market.functions
        t = self._terms(job)
        return [(self.outsider, m.finalize(job.job_id, t), 0), (self.outsider, m.reclaim(job.job_id, t), 0),
                (self.outsider, m.timeoutGrant(job.job_id, t), 0)]

    def _bystander_exit_at(self, job: JobModel) -> int | None:
        """The second from which a bystander can end (or reopen) the job with every party silent; None for an Open job
        (only its client can end that, and may at any time)."""
        if job.holder is None:
            return None
        if job.granted_at is None:
            assert job.assigned_at is not None
            return min(job.assigned_at + GRANT_TIMEOUT, job.latest_start) + 1
        if job.claim_at is None:
            return job.granted_at + job.terms.run_time + 1
        if job.disputed_at is None:
            return job.claim_at + job.terms.challenge_window + 1
        return job.disputed_at + DISPUTE_WINDOW + 1

    @precondition(lambda self: any(j.live for j in self.jobs.values()))
    @rule(data=st.data())
    def no_job_is_stuck(self, data: st.DataObject) -> None:
        job = self._pick(data, *LIVE)
        if not job.live:
            return
        now_ok = [s.address for s, fn, v in self._moves(job) if self._dry_run(s, fn, v) is None]
        assert now_ok, f"job {job.job_id} ({job.expected_state().name}) cannot be moved by anyone at t={self._now()}"
        if job.holder is None:
            assert self._dry_run(job.client, self.market.functions.cancel(job.job_id, self._terms(job))) is None
            return
        exit_at = self._bystander_exit_at(job)
        assert exit_at is not None
        snapshot = self.tester.take_snapshot()
        try:
            self.w.at(max(exit_at, self._now()))
            ok = [fn.fn_name for s, fn, v in self._bystander_moves(job) if self._dry_run(s, fn, v) is None]
        finally:
            self.tester.revert_to_snapshot(snapshot)
        assert ok, f"job {job.job_id} ({job.expected_state().name}) is stuck if its parties stay silent past t={exit_at}"

    # ------------------------------------------------------------ checks
    def _holding(self, token: str, account: str) -> int:
        if token == ETH:
            return self.w.balance(account)
        return int(self.token.functions.balanceOf(account).call())

    def _after(self, job: JobModel, worker_id: int | None) -> None:
        """Checks on what one transition touched: the job, its worker, and the two parties' credits."""
        self._check_job(job)
        accounts = {(job.token, job.terms.client), (ETH, job.terms.client)}
        if worker_id is not None:
            self._check_worker(worker_id)
            wm = self._worker(worker_id)
            if wm is not None:
                accounts |= {(job.token, wm.operator.address), (ETH, wm.operator.address)}
        self._check_credits(accounts)

    def _check_job(self, job: JobModel) -> None:
        view = self.market.functions.getJob(job.job_id).call()
        state, since, worker_id, _, terms_hash = JobState(view[0]), int(view[1]), int(view[2]), view[3], bytes(view[4])
        assert state == job.expected_state(), f"job {job.job_id}: chain says {state.name}, the facts say {job.expected_state().name}"
        assert terms_hash == job.terms.hash
        if job.live:
            # the deadlines each party was promised count from the fact the state rests on
            assert since == job.since(), f"job {job.job_id}: its clock started at {since}, the facts say {job.since()}"
            if job.holder is not None:
                assert worker_id == job.holder

    def _check_worker(self, worker_id: int) -> None:
        raw = self.registry.functions.getWorkerById(worker_id).call()
        stake, active_jobs, locked = int(raw[6]), int(raw[4]), int(raw[5]) * 10**9
        held = self._held(worker_id)
        wm = self._worker(worker_id)
        expected_stake = wm.stake if wm is not None else 0  # an old id of a worker that left holds nothing
        assert stake == expected_stake, f"worker {worker_id}: stake {stake}, the model says {expected_stake} (a slash without cause?)"
        assert locked == sum(j.collateral for j in held), f"worker {worker_id}: {locked} locked for jobs worth {sum(j.collateral for j in held)}"
        assert active_jobs == len(held), f"worker {worker_id}: activeJobs {active_jobs}, but it holds {len(held)} jobs"
        assert locked <= stake

    def _check_credits(self, keys: set[tuple[str, str]]) -> None:
        for token, account in keys:
            on_chain = int(self.market.functions.credits(token, account).call())
            assert on_chain == self.credits.get((token, account), 0), f"credit of {account} in {token}: chain {on_chain}, model {self.credits.get((token, account), 0)}"

    @invariant()
    def money_is_conserved(self) -> None:
        COUNTER["steps"] += 1
        for token in (ETH, self.token.address):
            escrow = sum(j.terms.amount for j in self.jobs.values() if j.live and j.token == token)
            bonds = DISPUTE_BOND * sum(1 for j in self.jobs.values() if j.live and j.disputed_at is not None) if token == ETH else 0
            owed = sum(v for (t, _), v in self.credits.items() if t == token)
            balance = self._holding(token, self.market.address)
            assert balance >= escrow + bonds + owed, f"{token}: the market holds {balance} but owes {escrow} + {bonds} + {owed}"
            assert balance == escrow + bonds + owed, f"{token}: the market holds {balance}, more than it owes ({escrow} + {bonds} + {owed})"
            assert balance == self.inflow[token] - self.outflow[token], f"{token}: {balance} held, {self.inflow[token]} in, {self.outflow[token]} out"
        registry = self.w.balance(self.registry.address)
        assert registry == self.stakes_in - self.stakes_out == sum(wm.stake for wm in self.workers)

    def teardown(self) -> None:
        """A full sweep at the end of each run: every job, every worker id, every credit."""
        for job in self.jobs.values():
            self._check_job(job)
        for worker_id in range(1, int(self.registry.functions.workerCount().call()) + 1):
            self._check_worker(worker_id)
        parties = {a.address for a in self.w.accounts}
        self._check_credits({(t, a) for t in (ETH, self.token.address) for a in parties})


@pytest.mark.slow
def test_market_properties_hold_under_random_play() -> None:
    COUNTER["steps"] = COUNTER["runs"] = 0
    started = time.monotonic()
    run_state_machine_as_test(MarketMachine, settings=SETTINGS)
    elapsed = time.monotonic() - started
    COUNTER["steps"] -= COUNTER["runs"]  # the invariant also runs once before each run's first step
    print(f"\nstateful market: {COUNTER['steps']} steps in {elapsed:.0f}s ({PROFILE} profile: {EXAMPLES} examples × up to {STEPS_PER_EXAMPLE} steps)")
    if PROFILE == "ci" and "LLMOS_STATEFUL_EXAMPLES" not in os.environ and "LLMOS_STATEFUL_STEPS" not in os.environ:
        assert COUNTER["steps"] >= 10_000, f"the CI profile ran only {COUNTER['steps']} steps"
