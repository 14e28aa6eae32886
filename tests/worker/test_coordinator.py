"""The coordinator on anvil: jobs posted by a client are allocated, run in worker processes and submitted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES
from llmos_chain.chain.market import JobState
from llmos_chain.crypto.keys import EncryptionKey, Keystore
from llmos_chain.datasets import grant_access
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.store import Store
from tests.worker.conftest import anvil_provider
from tests.worker.test_runner import _recipe
from worker import models

pytestmark = [pytest.mark.anvil, pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]


def test_posted_jobs_are_allocated_run_and_submitted(tmp_path: Path, intents_jsonl: bytes) -> None:
    with anvil_provider(tmp_path, gpus=2, price=10**14) as provider:
        node, world, deployment, signer = provider.node, provider.world, provider.deployment, provider.signer
        setup = provider.setup

        command = WorkerCommand(node.url, deployment, tmp_path / "worker-ks", "worker", tmp_path / "results", tmp_path / "work",
                                {"LLMOS_PRIVATE_KEY": "0x" + signer.key.hex().removeprefix("0x")})
        coordinator = Coordinator(world.suite, Store(tmp_path / "coordinator.db"), world.operator,
                                  [WorkerConfig(signer.address, gpus=2, mem_gib=24, price_per_gpu_hour_wei=10**14, gpu_slots=(0, 1))],
                                  Executor(command, tmp_path / "logs"))

        from llmos_chain.datasets import Manifest, manifest_path

        first = setup.job(intents_jsonl, _recipe())  # assigned and granted by hand: the coordinator only has to run it
        folder = tmp_path / "job0"
        manifest = Manifest.load(manifest_path(folder / "data.sealed"))
        dataset_id = world.job(first).dataset_id
        recipe = _recipe()
        request = world.request(dataset_id=dataset_id, recipe_hash=recipe.hash(), recipe_uri=(folder / "recipe.json").as_uri(),
                                client_key=setup.client_key.public_bytes(),
                                base_model_hash=models.base_model_hash(recipe.base_model, recipe.hyper.seed))
        second, _ = world.act(world.client).post_job(request)  # this one the coordinator must allocate too

        deadline = time.monotonic() + 240
        granted = set()
        while time.monotonic() < deadline:
            coordinator.step()
            view = world.job(second)
            if view.state is JobState.ASSIGNED and second not in granted:
                grant_access(world.act(world.owner), setup.store, dataset_id, second, manifest.key_id)  # the owner's part
                granted.add(second)
            # on chain, and final for the coordinator too (its follower has read the submissions' blocks)
            if all(world.job(j).state is JobState.SUBMITTED for j in (first, second)) and coordinator.outbox.depth() == 0:
                break
            time.sleep(0.2)
        assert world.job(first).state is JobState.SUBMITTED and world.job(second).state is JobState.SUBMITTED
        assert world.job(second).worker == signer.address
        keys = {i["key"]: i["status"] for i in map(dict, coordinator.store.db.execute("SELECT key, status FROM outbox"))}
        assert [status for key, status in keys.items() if key.startswith(f"assign:{second}:{signer.address}:")] == ["confirmed"]
        assert keys[f"submit:{first}"] == "confirmed" and keys[f"submit:{second}"] == "confirmed"
        assert coordinator.outbox.depth() == 0
        runs = {r["job_id"]: r["status"] for r in coordinator.store.db.execute("SELECT job_id, status FROM runs")}
        assert runs == {first: "ok", second: "ok"}


def test_coordinator_process_with_its_api(tmp_path: Path, intents_jsonl: bytes) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from llmos_chain.chain.devchain import free_port
    from llmos_chain.datasets import Manifest, manifest_path, register_dataset, seal_dataset

    with anvil_provider(tmp_path, gpus=1, price=10**14) as provider:
        node, world, deployment, signer = provider.node, provider.world, provider.deployment, provider.signer
        port = free_port()
        config = {"workers": [{"address": signer.address, "gpus": 1, "mem_gib": 24, "price_per_gpu_hour_wei": 10**14,
                               "enc_key": "worker", "dev_account": 8}],
                  "state": str(tmp_path / "c.db"), "results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"),
                  "work_dir": str(tmp_path / "work"), "keystore": str(tmp_path / "worker-ks"), "poll_interval_s": 0.3, "api_port": port, "file_roots": [str(tmp_path)]}
        (tmp_path / "coordinator.json").write_text(json.dumps(config))
        proc = subprocess.Popen([sys.executable, "-m", "llmos_chain.cli.main", "coordinator", "run", "--rpc", node.url,
                                 "--deployment", str(deployment), "--config", str(tmp_path / "coordinator.json"), "--dev-account", "4"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            store = Keystore(tmp_path / "owner-ks")
            src = tmp_path / "d.jsonl"
            src.write_bytes(intents_jsonl)
            manifest = seal_dataset(src, tmp_path / "d.sealed", store, chunk_size=4096)
            dataset_id, _ = register_dataset(world.act(world.owner), manifest, (tmp_path / "d.sealed").as_uri())
            recipe = _recipe()
            (tmp_path / "recipe.json").write_bytes(recipe.canonical_bytes())
            request = world.request(dataset_id=dataset_id, recipe_hash=recipe.hash(), recipe_uri=(tmp_path / "recipe.json").as_uri(),
                                    client_key=EncryptionKey.generate().public_bytes(),
                                    base_model_hash=models.base_model_hash(recipe.base_model, recipe.hyper.seed))
            job, _ = world.act(world.client).post_job(request)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and world.job(job).state is JobState.OPEN:
                time.sleep(0.2)
            assert world.job(job).state is JobState.ASSIGNED, "the coordinator process did not take the job"
            grant_access(world.act(world.owner), store, dataset_id, job, Manifest.load(manifest_path(tmp_path / "d.sealed")).key_id)
            while time.monotonic() < deadline and world.job(job).state is not JobState.SUBMITTED:
                time.sleep(0.3)
            assert world.job(job).state is JobState.SUBMITTED
            base = f"http://127.0.0.1:{port}"
            deadline_api = time.monotonic() + 10
            while time.monotonic() < deadline_api:
                detail = httpx.get(f"{base}/jobs/{job}").json()
                if detail.get("state") == "submitted":
                    break
                time.sleep(0.3)
            assert detail["state"] == "submitted" and [h["event"] for h in detail["history"]][0] == "JobPosted"
            assert httpx.get(f"{base}/health").json()["ok"] is True
            metrics = httpx.get(f"{base}/metrics").text
            assert 'llmos_jobs{state="submitted"} 1' in metrics and "llmos_outbox_depth 0" in metrics
            assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "llmos coordinator"
            assert httpx.get(f"{base}/workers").json()[0]["address"] == signer.address
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                out = proc.communicate(timeout=20)[0].decode()
            except subprocess.TimeoutExpired:
                proc.kill()
                out = proc.communicate()[0].decode()
        assert "Traceback" not in out, out[-3000:]
