"""Reverts end an intent `failed` with the contract's custom error by name, and are never sent again.

Two ways an intent reverts: at gas estimation (nothing is signed or sent), or on chain (the transaction was signed
while it would still succeed and is mined after another transaction changed the state: a receipt with status 0,
gas spent). Both are races two providers run for the same job; each is driven here on real contracts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.market import JobState, get_job
from llmos_chain.chain.outbox import Intent, Outbox
from llmos_chain.store import Store
from tests.helpers import RUN_TIME, World, deploy_world
from tests.market.test_coordinator_allocation import CHEAP, FAST, provider


def _outbox(world: World, path: Path) -> Outbox:
    def assigned(intent: Intent) -> bool:
        job = get_job(world.suite, intent.args[0])
        return job.worker_id == intent.args[2] and job.state is not JobState.OPEN

    return Outbox(world.w3, Store(path), world.operator, {"JobMarket": world.suite.market}, already_done=assigned)


def _rival(world: World) -> tuple[LocalAccount, str]:
    """A second provider: its own operator and worker."""
    operator, worker = world.accounts[7], Account.create()
    world.register_worker(operator=operator, worker_key=worker)
    return operator, str(worker.address)


def _nonce(world: World) -> int:
    return int(world.w3.eth.get_transaction_count(world.operator.address))


def _assign(world: World, outbox: Outbox, job: int) -> Intent:
    return outbox.add(f"assign:{job}", "JobMarket", "assign", [job, world.terms(job).as_list(), world.worker_id()])


def _no_resend(world: World, outbox: Outbox, intent: Intent, nonce: int) -> None:
    """Driving again sends nothing and leaves the failed intent as it was."""
    for _ in range(3):
        assert outbox.drive(wait_s=0.2) == []
    again = outbox.get(intent.key)
    assert (again.status, again.error, again.hashes, again.tx_hash) == (intent.status, intent.error, intent.hashes, intent.tx_hash)
    assert _nonce(world) == nonce and outbox.depth() == 0


def test_an_assign_mined_after_a_rival_took_the_job_fails_with_the_decoded_error(world: World, tmp_path: Path) -> None:
    operator, worker = _rival(world)
    job = world.post()
    outbox = _outbox(world, tmp_path / "s.db")
    signed = outbox._sign(_assign(world, outbox, job))  # estimated and signed while the job was still Open
    assert signed.status == "signed"
    world.assign(job, operator=operator, worker=worker)  # the rival's assign is mined first
    before = _nonce(world)
    (failed,) = outbox.drive(wait_s=2)
    receipt = world.w3.eth.get_transaction_receipt(failed.tx_hash)
    assert receipt["status"] == 0 and failed.tx_hash == signed.tx_hash  # mined, reverted, gas spent
    assert failed.status == "failed" and failed.block == receipt["blockNumber"]
    assert "JobInvalidState" in (failed.error or ""), failed.error
    assert _nonce(world) == before + 1
    assert world.job(job).worker == worker  # the rival keeps the job
    _no_resend(world, outbox, failed, before + 1)


def test_an_assign_mined_after_the_start_window_closed_fails_with_the_decoded_error(world: World, tmp_path: Path) -> None:
    """A revert that depends on the block's time, not on another transaction: the job's latest start passes between
    signing and mining."""
    t = world.next_time() + 100
    job = world.post(deadline=t + RUN_TIME, run_time=RUN_TIME)  # latest start: t
    outbox = _outbox(world, tmp_path / "s.db")
    signed = outbox._sign(_assign(world, outbox, job))
    world.at(t + 1)
    before = _nonce(world)
    (failed,) = outbox.drive(wait_s=2)
    assert world.w3.eth.get_transaction_receipt(signed.tx_hash)["status"] == 0
    assert failed.status == "failed" and "JobTooLateToStart" in (failed.error or ""), failed.error
    assert _nonce(world) == before + 1 and world.job(job).state is JobState.OPEN
    _no_resend(world, outbox, failed, before + 1)


def test_an_assign_that_reverts_at_estimation_fails_with_the_decoded_error_and_sends_nothing(world: World, tmp_path: Path) -> None:
    operator, worker = _rival(world)
    job = world.post()
    world.assign(job, operator=operator, worker=worker)  # the rival was first: our estimate reverts
    outbox = _outbox(world, tmp_path / "s.db")
    _assign(world, outbox, job)
    before = _nonce(world)
    (failed,) = outbox.drive(wait_s=1)
    assert failed.status == "failed" and "JobInvalidState" in (failed.error or ""), failed.error
    assert failed.tx_hash is None and failed.hashes == [] and failed.nonce is None  # nothing signed
    assert _nonce(world) == before
    _no_resend(world, outbox, failed, before)


def test_two_providers_racing_for_one_job_the_loser_fails_once_and_backs_off(world: World, tmp_path: Path) -> None:
    """Two coordinators allocate the same job. The loser's transaction was signed before the winner's was mined: it is
    mined and reverts; its intent ends `failed` with the error's name, and no later step tries the job again."""
    (tmp_path / "b").mkdir()
    winner = provider(world, tmp_path, [(1, 80, CHEAP, FAST)])
    loser = provider(world, tmp_path / "b", [(1, 80, CHEAP, FAST)], operator=world.accounts[7])
    job = loser.post()  # its recipe is under both providers' roots
    winner.jobs.append(job)
    winner.posted[job] = loser.posted[job]
    lc = loser.coordinator
    lc.follower.poll()
    assert lc._allocate()[0] == [job]
    (intent,) = lc.outbox.pending()
    lc.outbox._sign(intent)  # the loser signed its assign (the estimate passed) ...
    assert winner.step() == [job]  # ... and the winner's was mined first
    sender = world.accounts[7].address
    before = int(world.w3.eth.get_transaction_count(sender))
    for _ in range(3):
        loser.step()
    (row,) = lc.store.db.execute("SELECT key, status, error, hashes FROM outbox").fetchall()
    assert row["status"] == "failed" and "JobInvalidState" in row["error"], dict(row)
    assert int(world.w3.eth.get_transaction_count(sender)) == before + 1  # one transaction, reverted on chain, not resent
    assert winner.worker_of(job) == winner.configs[0].address


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_an_assign_that_loses_a_race_in_the_same_block_fails_with_the_decoded_error(tmp_path: Path) -> None:
    """Both assigns are mined in one block, the rival's first (it pays a higher fee): ours reverts there. Replaying the
    call on the state before that block would succeed (the job was Open), so the reason must be found by replaying it
    where it failed."""
    from llmos_chain.chain.connect import connect

    with Anvil() as node:
        world = deploy_world(connect(node.url))
        world.register_worker()
        world.register_dataset()
        operator, worker = world.accounts[7], Account.create()
        world.register_worker(operator=operator, worker_key=worker)
        job = world.post()
        outbox = _outbox(world, tmp_path / "s.db")
        _assign(world, outbox, job)
        rpc = world.w3.provider.make_request  # type: ignore[attr-defined]
        rpc("evm_setAutomine", [False])
        try:
            outbox.drive(wait_s=0.2)  # estimated, signed and sent: in the pool, not mined
            (ours,) = outbox.pending()
            assert ours.status == "sent"
            fn = world.suite.market.functions.assign(job, world.terms(job).as_tuple(), world.worker_id(worker.address))
            tx = fn.build_transaction({"from": operator.address, "gas": 500_000, "gasPrice": 4 * int(ours.fee or 0),
                                       "nonce": world.w3.eth.get_transaction_count(operator.address)})
            rival = world.w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction)
            rpc("evm_mine", [])
        finally:
            rpc("evm_setAutomine", [True])
        (failed,) = outbox.drive(wait_s=5)
        ours_receipt = world.w3.eth.get_transaction_receipt(failed.tx_hash)
        rival_receipt = world.w3.eth.get_transaction_receipt(rival)
        assert ours_receipt["blockNumber"] == rival_receipt["blockNumber"]  # the same block
        assert rival_receipt["status"] == 1 and ours_receipt["status"] == 0
        assert rival_receipt["transactionIndex"] < ours_receipt["transactionIndex"]
        assert failed.status == "failed" and "JobInvalidState" in (failed.error or ""), failed.error
        nonce = _nonce(world)
        _no_resend(world, outbox, failed, nonce)
        assert world.job(job).worker == worker.address
