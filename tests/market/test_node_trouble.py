"""The coordinator against a node in trouble: stopped and restarted with its state, answering errors, reorged.

Each test ends with the coordinator's view matching the chain: every job in the state the contract
reports, one assignment per job, no intent left unfinished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import Web3

from llmos_chain.chain.connect import connect
from llmos_chain.chain.deploy import Deployment, Suite
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.faultproxy import FaultProxy
from llmos_chain.chain.market import JobState, MarketClient, WorkerParams, get_job
from llmos_chain.chain.contracts import Sender
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.recipe import Recipe
from llmos_chain.store import Store
from tests.helpers import STAKE, World, deploy_world

pytestmark = [pytest.mark.anvil, pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]


@dataclass
class Provider:
    world: World
    coordinator: Coordinator
    dataset_id: int
    recipe: Recipe
    recipe_uri: str

    def post(self, amount: int = 10**16) -> int:
        w = self.world
        request = w.request(dataset_id=self.dataset_id, amount=amount, recipe_uri=self.recipe_uri, recipe_hash=self.recipe.hash())
        job_id, _ = w.act(w.client).post_job(request)
        return job_id

    def steps_until(self, done: Callable[[], bool], timeout_s: float = 60.0) -> int:
        """Run the coordinator as `run_forever` does (a failing step is retried) until `done()`; returns failed steps."""
        failed = 0
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "the coordinator did not get there in time"
            if self.coordinator.safe_step() is None:
                failed += 1
            time.sleep(0.05)
        return failed

    def assert_matches_chain(self, job_ids: list[int]) -> None:
        suite, store = self.world.suite, self.coordinator.store
        for job_id in job_ids:
            row, view = store.job(job_id), get_job(suite, job_id)
            assert row is not None and row["state"] == view.state.name.lower(), (job_id, row, view)
            assert row["worker"] == view.worker
        assigned = suite.market.events.JobAssigned().get_logs(from_block=suite.deployment.start_block)
        assert sorted(e["args"]["jobId"] for e in assigned) == sorted(job_ids)  # exactly one assignment each
        assert self.coordinator.outbox.depth() == 0


def _provider(world: World, tmp: Path, url: str | None = None) -> Provider:
    """A coordinator with one 8-GPU worker, talking to the node at `url` (default: the world's own connection)."""
    signer = world.accounts[8]
    world.act(world.operator).register_worker(signer.address, WorkerParams(signer.address, "CPU", 8, 24, 10**14, b"\x01" * 32), STAKE * 8)
    dataset_id, _ = world.act(world.owner).register_dataset(b"\x01" * 32, b"\x02" * 32, 1, "file:///dev/null")
    suite = world.suite if url is None else Suite(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 5})), world.suite.deployment)
    command = WorkerCommand(url or "", tmp / "deployment.json", tmp, "none", tmp / "results", tmp / "work")
    coordinator = Coordinator(suite, Store(tmp / "coordinator.db"), world.operator, [WorkerConfig(signer.address, 8, 24, 10**14)],
                              Executor(command, tmp / "logs"), withdraw=False)
    # a real recipe: a coordinator takes only jobs whose recipe it can read and verify
    recipe = Recipe.model_validate({"task": "sequence-classification", "method": "lora",
                                    "base_model": {"kind": "config", "name": "tiny-bert"}, "hyper": {"steps": 5}})
    (tmp / "recipe.json").write_bytes(recipe.canonical_bytes())
    return Provider(world, coordinator, dataset_id, recipe, (tmp / "recipe.json").as_uri())


def _assigned(provider: Provider, job_ids: list[int]) -> Callable[[], bool]:
    return lambda: all(get_job(provider.world.suite, j).state is JobState.ASSIGNED for j in job_ids) and \
        all((provider.coordinator.store.job(j) or {}).get("state") == "assigned" for j in job_ids) and \
        provider.coordinator.outbox.depth() == 0


def test_node_stopped_and_restarted_with_its_state(tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    node = Anvil(state_file=state).start()
    try:
        world = deploy_world(connect(node.url))
        provider = _provider(world, tmp_path)
        first = [provider.post() for _ in range(3)]
        provider.steps_until(_assigned(provider, first))

        node.stop()  # SIGTERM: anvil writes its state
        assert state.exists()
        failed = sum(provider.coordinator.safe_step() is None for _ in range(3))
        assert failed == 3  # every step fails cleanly while the node is down…
        assert [provider.coordinator.store.job(j)["state"] for j in first] == ["assigned"] * 3  # …and forgets nothing

        node = Anvil(port=node.port, state_file=state).start()  # same URL, state loaded
        world.conn.w3.provider = Web3.HTTPProvider(node.url)  # a fresh connection pool for the test's own calls
        second = [provider.post() for _ in range(2)]
        provider.steps_until(_assigned(provider, first + second))
        provider.assert_matches_chain(first + second)
    finally:
        node.stop()


def test_node_answering_errors(tmp_path: Path) -> None:
    with Anvil() as node:
        world = deploy_world(connect(node.url))
        with FaultProxy(node.url, error_rate=0.15) as proxy:  # half HTTP 502, half JSON-RPC -32603
            provider = _provider(world, tmp_path, proxy.url)
            jobs = [provider.post() for _ in range(6)]
            failed = provider.steps_until(_assigned(provider, jobs), timeout_s=120)
            assert sum(proxy.stats()["faults"].values()) >= 3 and failed > 0  # the node really did fail under it
            proxy.set(error_rate=0.0)  # the node recovers
            provider.assert_matches_chain(jobs)
            decided = [json.loads(r["args"])[0] for r in provider.coordinator.store.db.execute(
                "SELECT args FROM outbox WHERE function IN ('assign', 'assignMany')")]
            assigned = [j for d in decided for j in (d if isinstance(d, list) else [d])]
            assert sorted(assigned) == sorted(jobs)  # one intent per job (alone or in a batch), none repeated


def test_reorg_under_the_coordinator(tmp_path: Path) -> None:
    with Anvil() as node:
        world = deploy_world(connect(node.url))
        provider = _provider(world, tmp_path)
        w3 = world.conn.w3
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        lost = provider.post(amount=10**16)
        provider.steps_until(_assigned(provider, [lost]))
        assert provider.coordinator.outbox.depth() == 0

        # the chain drops the post and the assignment, then grows past the old head with other jobs
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        jobs = [provider.post(amount=2 * 10**16) for _ in range(2)]  # job ids start again at `lost`
        assert jobs[0] == lost
        for _ in range(5):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        provider.steps_until(_assigned(provider, jobs))
        provider.assert_matches_chain(jobs)
        assert provider.coordinator.store.job(lost)["escrow"] == str(2 * 10**16)  # the projection is the new chain's
