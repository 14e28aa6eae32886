"""WorkerRegistry: registration, updates, stake, pause, exit, and the market-only collateral calls."""

from __future__ import annotations

import os

from web3.logs import DISCARD

from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.market import WorkerParams, ZERO_ADDRESS
from llmos_chain.crypto.keys import KeyKind
from tests.helpers import STAKE, UNBONDING, World, reverts

# Worker tuple indices (getWorker): operator, id, status, gpuCount, gpuMemGiB, keyKind, signer, price, stake, locked,
# unbondingEnd, gpuModel, encryptionKey
OPERATOR, ID, STATUS, GPUS, MEM, KIND, SIGNER, PRICE, STAKE_I, LOCKED, UNBONDING_END, MODEL, KEY = range(13)


def _params(signer: str, **overrides: object) -> WorkerParams:
    values: dict[str, object] = dict(signer=signer, gpu_model="A100-40GB", gpu_count=4, gpu_mem_gib=40, price_per_gpu_hour=7, encryption_key=b"\x05" * 32)
    values.update(overrides)
    return WorkerParams(**values)  # type: ignore[arg-type]


def test_register_stores_the_record_and_a_compact_id(world: World) -> None:
    new = world.accounts[8].address
    receipt = world.act(world.operator).register_worker(new, _params(new), 3 * 10**17)
    event = world.suite.workers.events.WorkerRegistered().process_receipt(receipt, errors=DISCARD)[0]["args"]
    record = world.worker_record(new)
    assert record[OPERATOR] == world.operator.address and record[SIGNER] == new
    assert (record[STATUS], record[GPUS], record[MEM], record[STAKE_I]) == (1, 4, 40, 3 * 10**17)
    assert record[MODEL].rstrip(b"\0") == b"A100-40GB"
    assert event["id"] == record[ID] == 2  # the fixture's worker is id 1
    assert world.suite.workers.functions.workerAt(2).call() == new
    assert world.suite.workers.functions.idOf(new).call() == 2
    assert world.suite.workers.functions.signerOf(2).call() == [new, new]
    assert world.suite.workers.functions.workerCount().call() == 2


def test_register_accepts_a_hybrid_key(world: World) -> None:
    new = world.accounts[8].address
    world.act(world.operator).register_worker(new, _params(new, key_kind=KeyKind.MLKEM768_X25519, encryption_key=os.urandom(1216)), 0)
    assert world.worker_record(new)[KIND] == 1


def test_register_reverts(world: World) -> None:
    new = world.accounts[8].address
    op = world.act(world.operator)
    with reverts("WorkerAlreadyRegistered", worker=world.worker):
        op.register_worker(world.worker, _params(world.worker), 0)
    with reverts("WorkerRegistryZeroAddress"):
        op.register_worker(ZERO_ADDRESS, _params(new), 0)
    with reverts("WorkerRegistryZeroAddress"):
        op.register_worker(new, _params(ZERO_ADDRESS), 0)
    with reverts("WorkerInvalidCapabilities", gpuCount=0, gpuMemGiB=40):
        op.register_worker(new, _params(new, gpu_count=0), 0)
    with reverts("WorkerInvalidEncryptionKey", keyKind=0, length=31):
        op.register_worker(new, _params(new, encryption_key=b"\x01" * 31), 0)
    with reverts("WorkerInvalidEncryptionKey", keyKind=1, length=32):
        op.register_worker(new, _params(new, key_kind=KeyKind.MLKEM768_X25519), 0)


def test_update_and_stake(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    op.transact(workers.update(world.worker, _params(world.stranger.address, gpu_count=2).as_tuple()))
    record = world.worker_record()
    assert (record[SIGNER], record[GPUS]) == (world.stranger.address, 2)
    op.transact(workers.addStake(world.worker), value=5)
    assert world.worker_record()[STAKE_I] == STAKE + 5
    with reverts("WorkerNotOperator", worker=world.worker, caller=world.stranger.address):
        Sender(world.w3, world.stranger).transact(workers.update(world.worker, _params(world.worker).as_tuple()))
    with reverts("WorkerNotRegistered", worker=world.stranger.address):
        op.transact(workers.addStake(world.stranger.address), value=1)


def test_pause_unpause(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    with reverts("WorkerNotPaused", worker=world.worker):
        op.transact(workers.unpause(world.worker))
    op.transact(workers.pause(world.worker))
    assert world.worker_record()[STATUS] == 2
    with reverts("WorkerNotActive", worker=world.worker, status=2):
        op.transact(workers.pause(world.worker))
    op.transact(workers.unpause(world.worker))
    assert world.worker_record()[STATUS] == 1


def test_exit_waits_for_unbonding_and_locked_collateral(world: World) -> None:
    workers = world.suite.workers.functions
    op = Sender(world.w3, world.operator)
    job = world.post()
    world.assign(job)
    receipt = op.transact(workers.requestExit(world.worker))
    end = world.suite.workers.events.ExitRequested().process_receipt(receipt, errors=DISCARD)[0]["args"]["unbondingEnd"]
    assert end == world.now() + UNBONDING
    with reverts("WorkerUnbonding", worker=world.worker):
        op.transact(workers.requestExit(world.worker))
    with reverts("WorkerNotActive", status=3):
        world.assign(world.post())  # exiting workers take no new jobs
    with reverts("WorkerUnbonding", worker=world.worker, unbondingEnd=end):
        op.transact(workers.withdrawStake(world.worker))
    world.advance(UNBONDING + 1)
    with reverts("WorkerCollateralLocked", worker=world.worker):
        op.transact(workers.withdrawStake(world.worker))
    Sender(world.w3, world.operator).transact(world.suite.market.functions.reportFailure(job, 1, b"\0" * 32))
    before = world.balance(world.operator.address)
    receipt = op.transact(workers.withdrawStake(world.worker))
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert world.balance(world.operator.address) == before + STAKE - fee
    assert world.worker_record()[STATUS] == 0
    assert world.suite.workers.functions.workerAt(1).call() == world.worker  # old jobs still resolve


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
    assert world.worker_record(new)[STAKE_I] == 10


def test_collateral_calls_are_market_only(world: World) -> None:
    workers = world.suite.workers.functions
    s = Sender(world.w3, world.stranger)
    for fn in (
        workers.lockCollateral(world.worker, world.operator.address, 1, 1, 1),
        workers.unlockCollateral(1, 0),
        workers.slash(1, 1, 0),
    ):
        with reverts("WorkerRegistryNotMarket", caller=world.stranger.address):
            s.transact(fn)


def test_set_market_once_by_owner(world: World) -> None:
    set_market = world.suite.workers.functions.setMarket(world.stranger.address)
    with reverts("OwnableUnauthorizedAccount", account=world.stranger.address):
        Sender(world.w3, world.stranger).transact(set_market)
    with reverts("WorkerRegistryMarketAlreadySet", market=world.suite.market.address):
        Sender(world.w3, world.deployer).transact(set_market)


def test_set_market_rejects_zero(world: World) -> None:
    fresh, _ = Sender(world.w3, world.deployer).deploy("WorkerRegistry", world.deployer.address, 0)
    with reverts("WorkerRegistryZeroAddress"):
        Sender(world.w3, world.deployer).transact(fresh.functions.setMarket(ZERO_ADDRESS))
