"""The coordinator on the embedded (eth-tester) chain: a posted job is allocated, granted by the owner's
agent, fine-tuned in a worker process (through the RPC bridge), submitted, accepted and paid out."""

from __future__ import annotations

import time
from pathlib import Path

from llmos_chain.agent import Agent, GrantPolicy
from llmos_chain.basemodel import base_model_hash
from llmos_chain.chain.bridge import ProviderBridge
from llmos_chain.chain.market import ZERO_ADDRESS, JobState
from llmos_chain.crypto.keys import Keystore
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.store import Store
from tests.worker.test_agent import _dataset
from tests.worker.test_runner import Setup, _recipe


def test_posted_job_is_allocated_run_submitted_and_paid(setup: Setup, intents_jsonl: bytes, tmp_path: Path) -> None:
    w = setup.world
    dataset_id, manifest = _dataset(setup, intents_jsonl)
    recipe = _recipe()
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_bytes(recipe.canonical_bytes())
    deployment = tmp_path / "deployment.json"
    w.suite.deployment.save(deployment)
    Keystore(tmp_path / "worker-ks").save_encryption_key("worker", setup.worker_key)

    with ProviderBridge(w.w3) as bridge:
        command = WorkerCommand(bridge.url, deployment, tmp_path / "worker-ks", "worker", tmp_path / "results", tmp_path / "work",
                                {"LLMOS_PRIVATE_KEY": "0x" + bytes(setup.signer.key).hex()})
        coordinator = Coordinator(w.suite, Store(tmp_path / "coordinator.db"), w.operator,
                                  [WorkerConfig(setup.signer.address, 1, 24, 1, gpu_slots=(0,))], Executor(command, tmp_path / "logs"))
        agent = Agent(w.suite, Store(tmp_path / "agent.db"), owner=w.owner, keystore=setup.store,
                      grants=GrantPolicy({dataset_id: manifest.key_id}))
        job_id = w.post(dataset_id=dataset_id, recipe_hash=recipe.hash(), recipe_uri=recipe_file.as_uri(),
                        base_model_hash=base_model_hash(recipe.base_model, recipe.hyper.seed),
                        client_key=setup.client_key.public_bytes())
        states = []
        deadline = time.monotonic() + 180
        while w.job(job_id).state is not JobState.SUBMITTED:
            assert time.monotonic() < deadline, (states, (tmp_path / "logs" / f"job-{job_id}.log").read_text()[-2000:])
            coordinator.step()
            agent.step()
            states.append(w.job(job_id).state.name)
            time.sleep(0.1)
        assert "RUNNING" in states  # the worker process ran while the chain said so
        coordinator.follower.poll()
        names = [e.name for e in coordinator.store.events(job_id)]
        assert names[:4] == ["JobPosted", "JobAssigned", "AccessGranted", "ResultSubmitted"]
        w.act(w.client).accept(job_id)
        for _ in range(3):
            coordinator.step()
        assert w.credits(w.operator.address, ZERO_ADDRESS) == 0  # the coordinator withdrew the payment
        outbox = {r["key"].split(":")[0]: r["status"] for r in coordinator.store.db.execute("SELECT key, status FROM outbox")}
        assert outbox == {"assign": "confirmed", "submit": "confirmed", "withdraw": "confirmed"}
        assert (tmp_path / "results" / str(job_id) / "attestation.json").is_file()
