"""The same lifecycle against anvil, a real node in a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import Deployment, Suite
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.market import JobState
from tests.helpers import PRICE, World, deploy_world, reverts

pytestmark = [
    pytest.mark.anvil,
    pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci` (make setup)"),
]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="module")
def anvil_world(anvil: Anvil) -> World:
    world = deploy_world(connect(anvil.url))
    world.register_worker()
    world.register_dataset()
    return world


def test_full_lifecycle_eth_and_erc20(anvil_world: World) -> None:
    w = anvil_world
    assert w.conn.chain_id == 31337 and not w.conn.embedded
    token = w.suite.token
    assert token is not None
    client = Sender(w.w3, w.client)
    client.transact(token.functions.mint(w.client.address, 10**21))
    client.transact(token.functions.approve(w.suite.market.address, 2**256 - 1))
    for currency in ("0x" + "00" * 20, token.address):
        job = w.post(token=currency)
        w.assign(job)
        w.grant(job)
        assert w.job(job).state == JobState.RUNNING
        w.submit(job)
        w.act(w.client).accept(job)
        assert w.job(job).state == JobState.SETTLED
        assert w.credits(w.operator.address, currency) == PRICE
        w.act(w.operator).withdraw(currency)
        assert w.credits(w.operator.address, currency) == 0
    assert token.functions.balanceOf(w.operator.address).call() == PRICE


def test_custom_errors_decode_on_a_real_node(anvil_world: World) -> None:
    w = anvil_world
    with reverts("JobNotFound", jobId=4242):
        w.act(w.client).accept(4242)
    job = w.post()
    with reverts("WorkerNotOperator", worker=w.worker, caller=w.stranger.address):
        w.assign(job, operator=w.stranger)
    with reverts("JobNotFound", jobId=4242):  # mined with a fixed gas limit, then replayed for its reason
        Sender(w.w3, w.client).transact(w.suite.market.functions.cancel(4242, w.terms(job).as_tuple()), gas=100_000)


def test_dispute_and_deadline_with_node_time(anvil_world: World) -> None:
    w = anvil_world
    disputed = w.post()
    w.assign(disputed)
    w.grant(disputed)
    w.submit(disputed)
    w.act(w.client).dispute(disputed, b"\x01" * 32)
    w.act(w.arbiter).resolve_dispute(disputed, False)
    assert w.job(disputed).state == JobState.REFUNDED
    late = w.post(deadline=w.now() + 600, run_time=300)
    w.assign(late)
    w.grant(late)
    with reverts("JobNotExpirable"):  # the run window is the node's clock, from the grant
        w.act(w.stranger).reclaim(late)
    w.advance(301)
    w.act(w.stranger).reclaim(late)
    assert w.job(late).state == JobState.EXPIRED


def test_cli_deploy_writes_a_usable_deployment_file(anvil: Anvil, tmp_path: Path) -> None:
    out = tmp_path / "deployment.json"
    proc = subprocess.run(
        [sys.executable, "-m", "llmos_chain.cli.main", "deploy", "--rpc", anvil.url, "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    deployment = Deployment.load(out)
    assert summary["contracts"]["JobMarket"] == deployment.address("JobMarket")
    assert deployment.chain_id == 31337
    Suite(connect(anvil.url).w3, deployment).verify()


def test_follower_survives_an_anvil_reorg(anvil_world: World, tmp_path: Path) -> None:
    from llmos_chain.chain.follower import Follower
    from llmos_chain.store import Store

    w = anvil_world
    follower = Follower(w.suite, Store(tmp_path / "state.db"), max_range=3)
    follower.poll()
    snapshot = w.w3.provider.make_request("evm_snapshot", [])["result"]
    lost = w.post()
    w.assign(lost)
    follower.poll()
    assert follower.store.job(lost)["state"] == "assigned"
    w.w3.provider.make_request("evm_revert", [snapshot])
    replacement = w.post(gpu_count=3)
    for _ in range(3):
        w.w3.provider.make_request("evm_mine", [])
    result = follower.poll()
    assert result.reorged_from is not None
    assert follower.store.job(replacement)["gpu_count"] == 3 and follower.store.job(replacement)["state"] == "open"
    assert {j["job_id"]: j["state"] for j in follower.store.jobs()} == {
        j["job_id"]: w.job(j["job_id"]).state.name.lower() for j in follower.store.jobs()
    }
