"""The outbox calls a transaction final only at the follower's depth, survives reorgs with the same bytes, and bumps
fees from the node's current price."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos_chain.chain.connect import connect
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.market import JobState
from llmos_chain.store import Store
from tests.chain.test_outbox import _assign_args, _outbox
from tests.helpers import World, deploy_world

pytestmark = [pytest.mark.anvil, pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]


def _world_with_job(node: Anvil) -> tuple[World, int]:
    """The suite on `node`, a registered worker and dataset, and one open job."""
    world = deploy_world(connect(node.url))
    world.register_worker()
    world.register_dataset()
    return world, world.post()


def _mine(w3: object, n: int) -> None:
    for _ in range(n):
        w3.provider.make_request("evm_mine", [])  # type: ignore[attr-defined]


def test_final_only_at_depth_and_a_shallow_reorg_resends_the_same_bytes(tmp_path: Path) -> None:
    with Anvil() as node:
        world, job = _world_with_job(node)
        w3 = world.w3
        outbox = _outbox(world, tmp_path / "s.db", confirmations=2)
        outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
        assert outbox.drive(wait_s=0.5) == []  # mined (automine) at depth 0: not final
        intent = outbox.get(f"assign:{job}")
        assert intent.status == "sent" and world.job(job).state == JobState.ASSIGNED
        _mine(w3, 1)
        assert outbox.drive(wait_s=0.3) == [] and outbox.get(f"assign:{job}").status == "sent"  # depth 1 of 2

        w3.provider.make_request("anvil_reorg", [2, []])  # the block with the assign is replaced; the tx is gone
        assert world.job(job).state == JobState.OPEN
        outbox.drive(wait_s=0.5)  # not on chain, not in the pool: the same signed bytes again
        assert world.job(job).state == JobState.ASSIGNED
        assert outbox.drive(wait_s=0.3) == []
        _mine(w3, 2)
        (done,) = outbox.drive(wait_s=2)
        assert done.status == "confirmed" and done.hashes == intent.hashes == [done.tx_hash]  # one transaction, ever
        assert int(w3.eth.get_transaction_count(world.operator.address)) == intent.nonce + 1


def test_a_reorg_below_the_depth_comes_back_through_the_store(tmp_path: Path) -> None:
    """Once final, a deeper reorg is the follower's to see: `rollback_after` sends the intent back to 'sent' with its
    bytes, and the outbox broadcasts them again (no new nonce, no second transaction)."""
    with Anvil() as node:
        world, job = _world_with_job(node)
        w3 = world.w3
        store = Store(tmp_path / "s.db")
        outbox = _outbox(world, tmp_path / "s.db", confirmations=1)
        outbox.store = store
        outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
        outbox.drive(wait_s=0.3)
        _mine(w3, 1)
        (done,) = outbox.drive(wait_s=1)
        assert done.status == "confirmed"
        w3.provider.make_request("anvil_reorg", [2, []])  # the assign and the block on it
        assert world.job(job).state == JobState.OPEN
        with store.transaction():
            store.rollback_after(int(done.block) - 1)  # what the follower does when it sees the reorg
        again = outbox.get(f"assign:{job}")
        assert again.status == "sent" and again.raw_tx == done.raw_tx and again.nonce == done.nonce
        outbox.drive(wait_s=0.5)
        _mine(w3, 1)
        (final,) = outbox.drive(wait_s=1)
        assert final.status == "confirmed" and final.tx_hash == done.tx_hash and world.job(job).state == JobState.ASSIGNED


def test_a_fee_bump_follows_a_spike_of_the_node_price(tmp_path: Path) -> None:
    with Anvil() as node:
        world, job = _world_with_job(node)
        w3 = world.w3
        w3.provider.make_request("evm_setAutomine", [False])
        outbox = _outbox(world, tmp_path / "s.db", stuck_after_s=3600.0)
        outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
        outbox.drive(wait_s=0.2)
        first = outbox.get(f"assign:{job}")
        spiked = int(first.fee or 0) * 4  # the base fee jumps far beyond one +25 % bump
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(spiked)])
        w3.provider.make_request("evm_mine", [])  # an empty block... the pool keeps ours: its fee is below the base fee
        outbox.stuck_after_s = 0.0
        outbox.drive(wait_s=0.0)  # one pass: one replacement
        bumped = outbox.get(f"assign:{job}")
        assert len(bumped.hashes) == 2 and int(bumped.fee or 0) >= int(w3.eth.gas_price) > int(first.fee or 0) * 1.25
        w3.provider.make_request("evm_setAutomine", [True])
        w3.provider.make_request("evm_mine", [])
        (done,) = outbox.drive(wait_s=3)
        assert done.status == "confirmed" and done.tx_hash == bumped.hashes[-1] and world.job(job).state == JobState.ASSIGNED


def test_a_follower_gated_outbox_takes_the_followers_event_as_its_receipt(tmp_path: Path) -> None:
    """A daemon's transaction is final once its follower has read the block; the event the follower recorded from it
    settles the intent without asking the node for a receipt (one fewer request per transaction), and nothing is final
    before the follower has read it."""
    from llmos_chain.chain.deploy import Suite
    from llmos_chain.chain.faultproxy import FaultProxy
    from llmos_chain.chain.follower import Follower
    from llmos_chain.chain.outbox import Outbox

    with Anvil() as node:
        world, job = _world_with_job(node)
        with FaultProxy(node.url) as proxy:
            w3 = connect(proxy.url).w3
            store = Store(tmp_path / "s.db")
            follower = Follower(Suite(w3, world.suite.deployment), store)
            follower.poll()
            outbox = Outbox(w3, store, world.operator, {"JobMarket": world.suite.market.w3.eth.contract(
                address=world.suite.market.address, abi=world.suite.market.abi)}, follower_gated=True)
            outbox.add(f"assign:{job}", "JobMarket", "assign", _assign_args(world, job))
            proxy.reset_counters()
            assert outbox.drive() == [] and outbox.get(f"assign:{job}").status == "sent"
            assert world.job(job).state == JobState.ASSIGNED  # mined (automine), not yet read by the follower
            assert outbox.drive() == [] and outbox.get(f"assign:{job}").status == "sent"  # the receipt alone is not enough
            follower.poll()
            proxy.reset_counters()
            (done,) = outbox.drive()
            assert done.status == "confirmed"
            event_block = store.db.execute("SELECT block FROM events WHERE name = 'JobAssigned' AND job_id = ?", (job,)).fetchone()["block"]
            assert done.block == event_block and done.tx_hash == outbox.get(f"assign:{job}").hashes[0]
            assert "eth_getTransactionReceipt" not in proxy.stats()["methods"]
