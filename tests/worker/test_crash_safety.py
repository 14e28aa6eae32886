"""Crash safety: the coordinator killed with SIGKILL again and again while 20 jobs go through their lifecycle.

Every job ends settled exactly once, no intent is sent as two transactions, and nothing reverts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES
from llmos_chain.chain.market import JobState
from llmos_chain.crypto.keys import EncryptionKey, Keystore
from llmos_chain.datasets import Manifest, grant_access, manifest_path, register_dataset, seal_dataset
from tests.worker.conftest import anvil_provider
from tests.worker.test_runner import _recipe
from worker import models

pytestmark = [pytest.mark.slow, pytest.mark.anvil,
              pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]

JOBS = 20
KILLS = 5


def test_sigkill_at_random_points_loses_and_repeats_nothing(tmp_path: Path, intents_jsonl: bytes) -> None:
    rnd = random.Random(42)
    with anvil_provider(tmp_path, gpus=4, price=10**14, stake_multiple=10) as provider:
        node, world, deployment, signer = provider.node, provider.world, provider.deployment, provider.signer
        config = {"workers": [{"address": signer.address, "gpus": 4, "mem_gib": 24, "price_per_gpu_hour_wei": 10**14,
                               "enc_key": "worker", "dev_account": 8}],
                  "state": str(tmp_path / "c.db"), "results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"),
                  "work_dir": str(tmp_path / "work"), "keystore": str(tmp_path / "worker-ks"), "poll_interval_s": 0.2, "file_roots": [str(tmp_path)]}
        (tmp_path / "coordinator.json").write_text(json.dumps(config))
        cmd = [sys.executable, "-m", "llmos_chain.cli.main", "coordinator", "run", "--no-api", "--rpc", node.url,
               "--deployment", str(deployment), "--config", str(tmp_path / "coordinator.json"), "--dev-account", "4"]
        log = open(tmp_path / "coordinator.log", "ab")

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

        store = Keystore(tmp_path / "owner-ks")
        src = tmp_path / "d.jsonl"
        src.write_bytes(intents_jsonl)
        manifest = seal_dataset(src, tmp_path / "d.sealed", store, chunk_size=4096)
        key_id = Manifest.load(manifest_path(tmp_path / "d.sealed")).key_id
        dataset_id, _ = register_dataset(world.act(world.owner), manifest, (tmp_path / "d.sealed").as_uri())
        recipe = _recipe(steps=10)
        (tmp_path / "recipe.json").write_bytes(recipe.canonical_bytes())
        base = models.base_model_hash(recipe.base_model, recipe.hyper.seed)
        jobs = []
        for _ in range(JOBS):
            request = world.request(dataset_id=dataset_id, recipe_hash=recipe.hash(), recipe_uri=(tmp_path / "recipe.json").as_uri(),
                                    client_key=EncryptionKey.generate().public_bytes(), base_model_hash=base)
            jobs.append(world.act(world.client).post_job(request)[0])

        proc = start()
        kills = 0
        next_kill = time.monotonic() + rnd.uniform(1.0, 4.0)
        deadline = time.monotonic() + 600
        granted: set[int] = set()
        accepted: set[int] = set()
        while time.monotonic() < deadline:
            for job in jobs:  # the owner's and the client's parts
                state = world.job(job).state
                if state is JobState.ASSIGNED and job not in granted:
                    grant_access(world.act(world.owner), store, dataset_id, job, key_id)
                    granted.add(job)
                elif state is JobState.SUBMITTED and job not in accepted:
                    world.act(world.client).accept(job)
                    accepted.add(job)
            if all(world.job(j).state is JobState.SETTLED for j in jobs):
                break
            if kills < KILLS and time.monotonic() >= next_kill:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                proc = start()
                next_kill = time.monotonic() + rnd.uniform(1.0, 5.0)
            time.sleep(0.2)
        paid_out = time.monotonic() + 60  # the restarted coordinator still pulls the operator's earnings
        while world.credits(world.operator.address) and time.monotonic() < paid_out:
            time.sleep(0.2)
        assert world.credits(world.operator.address) == 0
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

        assert kills == KILLS
        assert [world.job(j).state for j in jobs] == [JobState.SETTLED] * JOBS
        settled = world.suite.market.events.JobSettled().get_logs(from_block=world.suite.deployment.start_block)
        assert sorted(e["args"]["jobId"] for e in settled) == sorted(jobs)  # each exactly once

        # every transaction the provider sent: one per (function, job), none reverted
        sent: dict[tuple[str, int], int] = {}
        withdrawals = 0
        for number in range(world.suite.deployment.start_block, world.w3.eth.block_number + 1):
            for tx in world.w3.eth.get_block(number, full_transactions=True)["transactions"]:
                if tx["from"] not in (world.operator.address, signer.address) or tx["to"] != world.suite.market.address:
                    continue
                fn, args = world.suite.market.decode_function_input(tx["input"])
                # a job assigned in an assignMany counts as its assign: a job in two transactions is a repeat
                keys = [("assign", int(j)) for j in args["jobIds"]] if fn.fn_name == "assignMany" else [(fn.fn_name, int(args.get("jobId", 0)))]
                assert world.w3.eth.get_transaction_receipt(tx["hash"])["status"] == 1, f"{keys} reverted"
                if fn.fn_name == "withdraw":  # payouts: one per settled batch and token, none of them reverted
                    withdrawals += 1
                    continue
                for key in keys:
                    sent[key] = sent.get(key, 0) + 1
        assert {k: n for k, n in sent.items() if n > 1} == {}
        assert 1 <= withdrawals <= JOBS
        assert sum(1 for (fn, _) in sent if fn == "assign") == JOBS and sum(1 for (fn, _) in sent if fn == "submitResult") == JOBS
