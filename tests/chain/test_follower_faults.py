"""The follower against nodes that lie by omission: a lagging backend, a shorter chain, another chain."""

from __future__ import annotations

from collections.abc import Iterator
import time
from pathlib import Path

import pytest

from llmos_chain.chain.connect import connect
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.faultproxy import FaultProxy
from llmos_chain.chain.follower import Follower
from llmos_chain.errors import NodeIdentityError, NodeLaggingError
from llmos_chain.store import Store
from tests.helpers import World, deploy_world

pytestmark = [pytest.mark.anvil, pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]


@pytest.fixture
def chain() -> Iterator[tuple[Anvil, World, FaultProxy]]:
    with Anvil() as node:
        world = deploy_world(connect(node.url))
        with FaultProxy(node.url, seed=3) as proxy:
            yield node, world, proxy


def _follower(world: World, proxy: FaultProxy, tmp: Path, **kwargs: object) -> Follower:
    suite = Suite(connect(proxy.url, timeout=5).w3, world.suite.deployment)
    return Follower(suite, Store(tmp / "f.db"), **kwargs)  # type: ignore[arg-type]


def _chain_events(world: World) -> set[tuple[str, int]]:
    logs = world.conn.w3.eth.get_logs({"fromBlock": world.suite.deployment.start_block, "toBlock": "latest",
                                       "address": [world.suite.market.address, world.suite.workers.address, world.suite.datasets.address]})
    return {("0x" + bytes(log["transactionHash"]).hex(), int(log["logIndex"])) for log in logs}


def _stored(follower: Follower) -> set[tuple[str, int]]:
    return {(e.tx_hash, e.log_index) for e in follower.store.events()}


def test_a_lagging_backend_never_makes_the_follower_skip_events(chain: tuple[Anvil, World, FaultProxy], tmp_path: Path) -> None:
    """Half the answers come from a backend 3 blocks behind, which returns the logs it has and says nothing of the
    rest. The follower polls between every new event; at the end it has every event, and it said it was asked again."""
    _, world, proxy = chain
    follower = _follower(world, proxy, tmp_path)
    follower.poll()
    proxy.set(lag_blocks=3, lag_rate=0.5)
    for _ in range(12):
        world.register_dataset()
        try:
            follower.poll()
        except NodeLaggingError:
            pass  # a backend behind the cursor: the poll ends, nothing is recorded
    proxy.set(lag_blocks=0, lag_rate=0.0)
    follower.poll()
    assert _stored(follower) == _chain_events(world)
    assert proxy.stats()["faults"].get("lag", 0) > 0 and follower.status.lagging_answers > 0


def test_a_node_behind_the_cursor_is_waited_for_then_believed(chain: tuple[Anvil, World, FaultProxy], tmp_path: Path) -> None:
    node, world, proxy = chain
    w3 = world.conn.w3
    follower = _follower(world, proxy, tmp_path, lag_patience=3)
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    world.register_dataset()
    follower.poll()
    before = _stored(follower)
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]  # the node restored an older state
    for attempt in (1, 2):
        with pytest.raises(NodeLaggingError, match=f"poll {attempt} of 3"):
            follower.poll()
        assert _stored(follower) == before  # nothing forgotten while it may only be lagging
    follower.poll()  # the third time it is believed: the dataset's registration is gone
    assert _stored(follower) == _chain_events(world) and len(before - _stored(follower)) == 1
    assert follower.status.reorgs == 1 and follower.status.last_reorg is not None


def test_another_chain_is_refused_and_nothing_is_forgotten(chain: tuple[Anvil, World, FaultProxy], tmp_path: Path) -> None:
    node, world, proxy = chain
    follower = _follower(world, proxy, tmp_path)
    world.register_dataset()
    follower.poll()
    assert follower.identity_ok
    before = _stored(follower)
    with Anvil() as empty:  # the node restarted empty behind the same URL
        proxy.set_upstream(empty.url)
        for _ in range(2):
            with pytest.raises(NodeIdentityError, match="not the chain this daemon follows"):
                follower.poll()
        assert not follower.identity_ok and follower.status.identity.startswith("mismatch")
        assert _stored(follower) == before
    proxy.set_upstream(node.url)  # the right node is back
    world.register_dataset()
    follower.poll()
    assert follower.identity_ok and _stored(follower) == _chain_events(world)


def test_a_redeployed_chain_with_the_same_addresses_is_another_chain(tmp_path: Path) -> None:
    """A dev node restarted empty and redeployed by the same account has the same addresses and code; its genesis
    (and the deployment block's hash) tell it apart. (Two anvils started in the same second have the same genesis and
    the same first blocks: that is one chain forked, a reorg, not this case; the restart here happens a minute later.)"""
    with Anvil() as first:
        world = deploy_world(connect(first.url))
        with FaultProxy(first.url) as proxy:
            follower = _follower(world, proxy, tmp_path)
            follower.poll()
            with Anvil(genesis_timestamp=int(time.time()) + 60) as second:
                twin = deploy_world(connect(second.url))
                assert twin.suite.market.address == world.suite.market.address
                proxy.set_upstream(second.url)
                world.register_dataset()  # on the first chain: not that it matters
                with pytest.raises(NodeIdentityError):
                    follower.poll()
