"""The outbox: one transaction per intent whatever the crash point, reverts named, stuck transactions replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.market import JobState, get_job
from llmos_chain.chain.outbox import Intent, Outbox
from llmos_chain.store import Store
from tests.helpers import World, deploy_world


def _outbox(world: World, path: Path, **kw: object) -> Outbox:
    def assigned(intent: Intent) -> bool:
        job = get_job(world.suite, intent.args[0])
        return job.worker_id == intent.args[2] and job.state is not JobState.OPEN

    return Outbox(world.w3, Store(path), world.operator, {"JobMarket": world.suite.market}, already_done=assigned, **kw)  # type: ignore[arg-type]


def _assign_args(world: World, job: int) -> list[object]:
    return [job, world.terms(job).as_list(), world.worker_id()]


def _first_job(world: World) -> int:
    return world.post()


def _nonce(world: World) -> int:
    return int(world.w3.eth.get_transaction_count(world.operator.address))


def test_intent_to_receipt_and_idempotent_keys(world: World, tmp_path: Path) -> None:
    outbox = _outbox(world, tmp_path / "s.db")
    job = world.post()
    before = _nonce(world)
    outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
    outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))  # same key: nothing new
    finished = outbox.drive(wait_s=5)
    assert [i.status for i in finished] == ["confirmed"] and outbox.depth() == 0
    assert world.job(job).state == JobState.ASSIGNED and _nonce(world) == before + 1
    assert outbox.drive(wait_s=1) == [] and _nonce(world) == before + 1


def test_a_reverting_intent_fails_with_the_named_error(world: World, tmp_path: Path) -> None:
    outbox = _outbox(world, tmp_path / "s.db")
    outbox.add("assign:999", "JobMarket", "assign", [999, world.terms(_first_job(world)).as_list(), world.worker_id()])
    (intent,) = outbox.drive(wait_s=1)
    assert intent.status == "failed" and "JobNotFound" in (intent.error or "")


def test_crash_after_signing_broadcasts_the_same_transaction(world: World, tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    job = world.post()
    first = _outbox(world, path)
    intent = first._sign(first.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job)))  # killed right after this commit
    assert intent.status == "signed"
    before = _nonce(world)
    resumed = _outbox(world, path)
    (done,) = resumed.drive(wait_s=5)
    assert done.status == "confirmed" and done.tx_hash == intent.tx_hash and _nonce(world) == before + 1


def test_crash_after_broadcast_does_not_send_again(world: World, tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    job = world.post()
    first = _outbox(world, path)
    intent = first._sign(first.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job)))
    before = _nonce(world)
    first._broadcast(intent)  # it went out, but the process died before recording "sent"
    resumed = _outbox(world, path)
    (done,) = resumed.drive(wait_s=5)
    assert done.status == "confirmed" and _nonce(world) == before + 1  # exactly one transaction


def test_effect_already_on_chain_is_not_sent(world: World, tmp_path: Path) -> None:
    outbox = _outbox(world, tmp_path / "s.db")
    job = world.post()
    outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
    world.assign(job)  # e.g. sent by a previous run whose bookkeeping was lost
    before = _nonce(world)
    (done,) = outbox.drive(wait_s=1)
    assert done.status == "done_elsewhere" and _nonce(world) == before


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_a_stuck_transaction_is_replaced_with_a_higher_fee(tmp_path: Path) -> None:
    from llmos_chain.chain.connect import connect

    with Anvil() as node:
        world = deploy_world(connect(node.url))
        world.register_worker()
        world.register_dataset()
        job = world.post()
        world.w3.provider.make_request("evm_setAutomine", [False])
        outbox = _outbox(world, tmp_path / "s.db", stuck_after_s=0.0)
        outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
        outbox.drive(wait_s=0.3)  # signed, sent, not mined, then replaced
        intent = outbox.get(f"assign:{job}")
        assert len(intent.hashes) >= 2 and intent.status == "sent"
        fees = [int(world.w3.eth.get_transaction(h)["gasPrice"]) for h in intent.hashes[-1:]]
        assert fees[0] > int(world.w3.eth.gas_price)
        world.w3.provider.make_request("evm_setAutomine", [True])
        world.w3.provider.make_request("evm_mine", [])
        (done,) = outbox.drive(wait_s=5)
        assert done.status == "confirmed" and done.tx_hash == intent.hashes[-1]
        assert world.job(job).state == JobState.ASSIGNED
        assert int(world.w3.eth.get_transaction_count(world.operator.address)) == intent.nonce + 1


def test_senders_sharing_one_store_each_drive_only_their_own(world: World, tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    job = world.post()
    operator = Outbox(world.w3, store, world.operator, {"JobMarket": world.suite.market})
    client = Outbox(world.w3, store, world.client, {"JobMarket": world.suite.market})
    operator.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
    other = world.post()
    client.add(f"cancel:{other}", "JobMarket", "cancel", [other, world.terms(other).as_list()])
    assert [i.key for i in operator.pending()] == [f"assign:{job}"] and [i.key for i in client.pending()] == [f"cancel:{other}"]
    assert [i.status for i in client.drive(wait_s=5)] == ["confirmed"]  # signed by the client, as cancel requires
    assert [i.status for i in operator.drive(wait_s=5)] == ["confirmed"]
    assert world.job(job).state is JobState.ASSIGNED and world.job(other).state is JobState.CANCELLED
