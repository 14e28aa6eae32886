"""WorkerRegistry: id-keyed records, updates, stake, pause, exit, and the market-only collateral calls."""

from __future__ import annotations

import os

from web3.logs import DISCARD

from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.market import JobState, JobTerms, WorkerParams, ZERO_ADDRESS
from llmos_chain.crypto.keys import KeyKind
from tests.helpers import COLLATERAL_PER_GPU, PRICE, STAKE, UNBONDING, World, h, reverts

ACTIVE, PAUSED, EXITING, EXITED = 1, 2, 3, 4


def _params(signer: str, **overrides: object) -> WorkerParams:
    values: dict[str, object] = dict(signer=signer, gpu_model="A100-40GB", gpu_count=4, gpu_mem_gib=40, price_per_gpu_hour=7, encryption_key=b"\x05" * 32)
    values.update(overrides)
    return WorkerParams(**values)  # type: ignore[arg-type]


def test_register_stores_the_record_under_a_compact_id(world: World) -> None:
    new = world.accounts[8].address
    signer = world.accounts[9].address
    receipt = world.act(world.operator).register_worker(new, _params(signer), 3 * 10**17)
    event = world.suite.workers.events.WorkerRegistered().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["worker"], event["operator"], event["id"], event["signer"], event["stake"]) == (new, world.operator.address, 2, signer, 3 * 10**17)
    record = world.worker_record(new)
    assert (record.operator, record.account, record.signer) == (world.operator.address, new, signer)
    assert (record.status, record.gpu_count, record.gpu_mem_gib, record.stake, record.locked, record.active_jobs) == (ACTIVE, 4, 40, 3 * 10**17, 0, 0)
    assert record.gpu_model.rstrip(b"\0") == b"A100-40GB" and record.price_per_gpu_hour == 7
    fn = world.suite.workers.functions
    assert fn.idOf(new).call() == 2  # the fixture's worker is id 1
    assert fn.workerAt(2).call() == new
    assert list(fn.signerOf(2).call()) == [new, signer]
    assert list(fn.authorities(2).call()) == [world.operator.address, signer]
    assert world.worker_record(2) == record  # by id and by address: the same record
    assert fn.workerCount().call() == 2
    assert fn.idOf(world.stranger.address).call() == 0 and fn.workerAt(99).call() == ZERO_ADDRESS


def test_register_accepts_a_hybrid_key(world: World) -> None:
    new = world.accounts[8].address
    world.act(world.operator).register_worker(new, _params(new, key_kind=KeyKind.MLKEM768_X25519, encryption_key=os.urandom(1216)), 0)
    assert world.worker_record(new).key_kind == 1


def test_register_reverts(world: World) -> None:
    new = world.accounts[8].address
    op = world.act(world.operator)
    with reverts("WorkerAlreadyRegistered", worker=world.worker):
        op.register_worker(world.worker, _params(world.worker), 0)
    with reverts("WorkerAlreadyRegistered", worker=world.worker):  # by anyone: the address is taken
        world.act(world.stranger).register_worker(world.worker, _params(world.worker), 0)
    with reverts("WorkerRegistryZeroAddress"):
        op.register_worker(ZERO_ADDRESS, _params(new), 0)
    with reverts("WorkerRegistryZeroAddress"):
        op.register_worker(new, _params(ZERO_ADDRESS), 0)
    with reverts("WorkerInvalidCapabilities", gpuCount=0, gpuMemGiB=40):
        op.register_worker(new, _params(new, gpu_count=0), 0)
    with reverts("WorkerInvalidCapabilities", gpuCount=4, gpuMemGiB=0):
        op.register_worker(new, _params(new, gpu_mem_gib=0), 0)
    with reverts("WorkerInvalidEncryptionKey", keyKind=0, length=31):
        op.register_worker(new, _params(new, encryption_key=b"\x01" * 31), 0)
    with reverts("WorkerInvalidEncryptionKey", keyKind=1, length=32):
        op.register_worker(new, _params(new, key_kind=KeyKind.MLKEM768_X25519), 0)


def test_update_and_stake(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    receipt = op.transact(workers.update(world.worker, _params(world.stranger.address, gpu_count=2).as_tuple()))
    event = world.suite.workers.events.WorkerUpdated().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (event["worker"], event["id"], event["signer"], event["gpuCount"]) == (world.worker, 1, world.stranger.address, 2)
    record = world.worker_record()
    assert (record.signer, record.gpu_count, record.operator) == (world.stranger.address, 2, world.operator.address)
    receipt = op.transact(workers.addStake(world.worker), value=5)
    added = world.suite.workers.events.StakeAdded().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (added["amount"], added["stake"]) == (5, STAKE + 5)
    assert world.worker_record().stake == STAKE + 5
    assert world.balance(world.suite.workers.address) == STAKE + 5
    with reverts("WorkerNotOperator", worker=world.worker, caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(workers.update(world.worker, _params(world.worker).as_tuple()))
    with reverts("WorkerNotOperator", worker=world.worker, caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(workers.addStake(world.worker), value=1)
    with reverts("WorkerNotRegistered", worker=world.stranger.address):
        op.transact(workers.addStake(world.stranger.address), value=1)
    with reverts("WorkerInvalidCapabilities"):
        op.transact(workers.update(world.worker, _params(world.worker, gpu_count=0).as_tuple()))


def test_pause_unpause_and_jobs_continue(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    job = world.post()
    world.assign(job)
    with reverts("WorkerNotPaused", worker=world.worker):
        op.transact(workers.unpause(world.worker))
    op.transact(workers.pause(world.worker))
    assert world.worker_record().status == PAUSED
    with reverts("WorkerNotActive", worker=world.worker, status=PAUSED):
        op.transact(workers.pause(world.worker))
    with reverts("WorkerNotActive", worker=world.worker, status=PAUSED):
        world.assign(world.post())  # no new jobs while paused
    world.grant(job)  # the job it holds goes on
    world.submit(job)
    assert world.state(job) == JobState.SUBMITTED
    with reverts("WorkerNotOperator", caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(workers.unpause(world.worker))
    op.transact(workers.unpause(world.worker))
    assert world.worker_record().status == ACTIVE


def test_exit_waits_for_unbonding_and_for_its_jobs(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    job = world.post()
    world.assign(job)
    receipt = op.transact(workers.requestExit(world.worker))
    end = world.suite.workers.events.ExitRequested().process_receipt(receipt, errors=DISCARD)[0]["args"]["unbondingEnd"]
    assert end == world.mined_at(receipt) + UNBONDING
    assert world.worker_record().unbonding_end == end and world.worker_record().status == EXITING
    with reverts("WorkerUnbonding", worker=world.worker, unbondingEnd=end):
        op.transact(workers.requestExit(world.worker))
    with reverts("WorkerNotActive", status=EXITING):
        world.assign(world.post())  # exiting workers take no new jobs
    world.at(end - 1)
    with reverts("WorkerUnbonding", worker=world.worker, unbondingEnd=end):
        op.transact(workers.withdrawStake(world.worker))
    world.at(end)
    with reverts("WorkerHoldsJobs", worker=world.worker, activeJobs=1):  # unbonded, but it still holds the job
        op.transact(workers.withdrawStake(world.worker))
    world.act(world.operator).report_failure(job, 1, h("cannot"))  # before the grant: the job goes back to Open
    assert world.state(job) == JobState.OPEN
    before = world.balance(world.operator.address)
    receipt = op.transact(workers.withdrawStake(world.worker))
    paid = world.suite.workers.events.StakeWithdrawn().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (paid["worker"], paid["to"], paid["amount"]) == (world.worker, world.operator.address, STAKE)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert world.balance(world.operator.address) == before + STAKE - fee
    record = world.worker_record()
    assert (record.status, record.stake) == (EXITED, 0)
    # The record stays: the job's worker id still names this registration.
    assert world.suite.workers.functions.workerAt(1).call() == world.worker
    assert world.job(job).worker_id == 1
    for fn in (workers.requestExit(world.worker), workers.withdrawStake(world.worker), workers.pause(world.worker)):
        with reverts("WorkerNotRegistered", worker=world.worker):
            op.transact(fn)


def test_exit_from_pause_is_allowed(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    op.transact(workers.pause(world.worker))
    op.transact(workers.requestExit(world.worker))
    assert world.worker_record().status == EXITING
    with reverts("WorkerNotPaused"):
        op.transact(workers.unpause(world.worker))


def test_re_registration_gets_a_new_id_and_a_clean_record(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    op.transact(workers.requestExit(world.worker))
    world.advance(UNBONDING)
    op.transact(workers.withdrawStake(world.worker))
    other_operator = world.accounts[7]
    world.act(other_operator).register_worker(world.worker, _params(world.worker), 10**17)
    assert workers.idOf(world.worker).call() == 2 and workers.workerCount().call() == 2
    new, old = world.worker_record(2), world.worker_record(1)
    assert (new.operator, new.status, new.stake, new.active_jobs) == (other_operator.address, ACTIVE, 10**17, 0)
    assert (old.operator, old.status, old.stake) == (world.operator.address, EXITED, 0)
    assert list(workers.authorities(1).call())[0] == world.operator.address  # old ids keep their old operator
    with reverts("WorkerNotOperator", caller=world.operator.address):  # the old operator has no say over the new record
        op.transact(workers.pause(world.worker))


def test_withdraw_stake_to_an_operator_refusing_ether(world: World) -> None:
    key = world.accounts[7]
    wallet, _ = Sender(world.w3, key).deploy("TestSmartWallet", key.address)
    owner = Sender(world.w3, key)
    new = world.accounts[8].address
    workers = world.suite.workers
    owner.transact(wallet.functions.execute(workers.address, 10, workers.encode_abi("register", [new, _params(new).as_tuple()])), value=10)
    owner.transact(wallet.functions.execute(workers.address, 0, workers.encode_abi("requestExit", [new])))
    world.advance(UNBONDING + 1)
    owner.transact(wallet.functions.setAcceptsEther(False))
    with reverts("WorkerTransferFailed", to=wallet.address, amount=10):
        owner.transact(wallet.functions.execute(workers.address, 0, workers.encode_abi("withdrawStake", [new])))
    assert world.worker_record(new).stake == 10


def test_collateral_calls_are_market_only(world: World) -> None:
    workers = world.suite.workers.functions
    for sender in (world.stranger, world.deployer, world.operator):
        for fn in (
            workers.lockCollateral(1, world.operator.address, 1, 1, 10**9, 1),
            workers.unlockCollateral(1, 0),
            workers.slash(1, 1, 0),
        ):
            with reverts("WorkerRegistryNotMarket", caller=sender.address):
                Sender(world.w3, sender).transact(fn)
    assert workers.market().call() == world.suite.market.address


def test_lock_checks_through_the_market(world: World) -> None:
    """The registry's checks on `lockCollateral`, reached the only way they can be: a market assignment."""
    job = world.post()
    terms = world.terms(job).as_tuple()
    with reverts("WorkerUnknownId", id=99):
        world.send(world.operator, world.suite.market.functions.assign(job, terms, 99))
    with reverts("WorkerNotOperator", worker=world.worker, caller=world.stranger.address):
        world.send(world.stranger, world.suite.market.functions.assign(job, terms, 1))
    with reverts("WorkerInsufficientCapabilities", worker=world.worker, gpuCount=8, gpuMemGiB=80):
        world.assign(world.post(gpu_count=9))
    with reverts("WorkerInsufficientCapabilities", worker=world.worker):
        world.assign(world.post(gpu_mem_gib=81))
    assert world.state(job) == JobState.OPEN  # a failed lock leaves the job as it was


def test_free_stake_bounds_the_collateral(world: World) -> None:
    # 1 ETH stake, 0.01 ETH per GPU: 12 jobs of 8 GPUs lock 0.96 ETH; the 13th does not fit.
    jobs = [world.post(gpu_count=8) for _ in range(13)]
    world.act(world.operator).assign_many(jobs[:12], world.worker)
    assert world.locked() == 12 * 8 * COLLATERAL_PER_GPU == world.worker_record().locked
    assert world.worker_record().active_jobs == 12
    with reverts("WorkerInsufficientFreeStake", worker=world.worker, available=STAKE - 96 * COLLATERAL_PER_GPU, needed=8 * COLLATERAL_PER_GPU):
        world.assign(jobs[12])
    world.send(world.operator, world.suite.workers.functions.addStake(world.worker), value=4 * COLLATERAL_PER_GPU)
    world.assign(jobs[12])  # exactly enough now: free == needed
    assert world.locked() == STAKE + 4 * COLLATERAL_PER_GPU


def test_active_jobs_are_bounded(world: World) -> None:
    """`activeJobs` is a uint8: the 256th concurrent job is refused rather than wrapping the counter."""
    stake = 3 * STAKE  # 255 one-GPU jobs lock 2.55 ETH
    operator = world.accounts[7]
    worker = world.register_worker(operator=operator, worker_key=world.accounts[8], gpus=1, mem=16, stake=stake)
    worker_id = world.worker_id(worker)
    market = world.suite.market
    jobs: list[tuple[int, tuple]] = []
    for _ in range(4):
        requests = [world.request() for _ in range(64)]
        # Explicit gas: py-evm's gas estimation of a large batch is a slow binary search.
        receipt = Sender(world.w3, world.client).transact(market.functions.postJobs([r.as_tuple() for r in requests]),
                                                           value=64 * PRICE, gas=12_000_000)
        for event in market.events.JobPosted().process_receipt(receipt, errors=DISCARD):
            jobs.append((event["args"]["jobId"], JobTerms.from_chain(event["args"]["terms"]).as_tuple()))
    sender = Sender(world.w3, operator)
    for part in (jobs[:128], jobs[128:255]):
        sender.transact(market.functions.assignMany([j for j, _ in part], [t for _, t in part], worker_id), gas=12_000_000)
    assert world.worker_record(worker).active_jobs == 255
    with reverts("WorkerTooManyJobs", worker=worker):
        sender.transact(market.functions.assign(jobs[255][0], jobs[255][1], worker_id))
