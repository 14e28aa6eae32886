"""`python -m worker run` as the coordinator's executor calls it: its own process, against anvil."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_chain.attestation import Attestation, verify
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES
from llmos_chain.chain.market import JobState
from tests.worker.conftest import anvil_provider
from tests.worker.test_runner import _recipe


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_worker_process_runs_a_job_on_anvil(tmp_path: Path, intents_jsonl: bytes) -> None:
    with anvil_provider(tmp_path, gpus=1, price=1) as provider:
        node, world, deployment, signer = provider.node, provider.world, provider.deployment, provider.signer
        setup = provider.setup
        job_id = setup.job(intents_jsonl, _recipe())
        env = {**os.environ, "LLMOS_PRIVATE_KEY": "0x" + signer.key.hex().removeprefix("0x")}
        cmd = [sys.executable, "-m", "worker", "run", "--job", str(job_id), "--rpc", node.url, "--deployment", str(deployment),
               "--keystore", str(tmp_path / "worker-ks"), "--enc-key", "worker", "--results", str(tmp_path / "results"),
               "--work-dir", str(tmp_path / "work"), "--json"]
        # the job's URIs are local files: a worker reads them only under a root its provider configured
        refused = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert refused.returncode == 3 and "outside the directories" in json.loads(refused.stdout)["message"]
        assert world.job(job_id).state == JobState.RUNNING  # nothing was reported: the coordinator decides that
        cmd += ["--file-root", str(tmp_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout)
        events = [json.loads(line)["event"] for line in proc.stderr.splitlines() if line.startswith("{")]
        assert events[0] == "recipe" and events[-1] == "attested" and "progress" in events
        att = Attestation.from_json({k: v for k, v in out["attestation"].items()})
        signature = bytes.fromhex(out["signature"][2:])
        verify(att, signature, signer.address, world.conn.chain_id, world.suite.market.address)
        world.act(world.operator).submit(job_id, att, signature)
        assert world.job(job_id).state == JobState.SUBMITTED
        setup.assert_no_plaintext_on_disk()

        # anyone audits it from another process with the RPC URL, the deployment file and the bundle
        audit = [sys.executable, "-m", "llmos_chain.cli.main", "audit", str(job_id), "--rpc", node.url,
                 "--deployment", str(deployment), "--bundle", out["bundle"], "--json"]
        proc_audit = subprocess.run(audit, capture_output=True, text=True, timeout=120)
        assert proc_audit.returncode == 0, proc_audit.stdout + proc_audit.stderr
        assert json.loads(proc_audit.stdout)["verdict"] == "pass"
        (Path(out["bundle"]) / "metrics.json").write_text('{"accuracy": 1.0}')  # a lie about the metrics
        proc_audit = subprocess.run(audit, capture_output=True, text=True, timeout=120)
        assert proc_audit.returncode == 1 and json.loads(proc_audit.stdout)["verdict"] == "fail"

        # the job is no longer running on this node: a JSON report and exit code 3, marked transient (the node may lag or
        # have reorged), so the coordinator never reports it on chain
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 3
        failure = json.loads(proc.stdout)
        assert failure["ok"] is False and "not running" in failure["message"] and failure["transient"] is True


def test_bench_finetune_interface() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "finetune", "--json", "--model", "tiny-bert", "--steps", "8"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert {"runner_tokens_per_s", "bare_tokens_per_s", "overhead", "device", "model"} <= set(result)
    # it ran what was asked, on real tokens, and both sides measured work (not a formula this test defines)
    assert result["model"] == "tiny-bert" and result["steps"] == 8 and result["device"] == "cpu"
    assert result["tokens_per_run"] > 0 and 0 < result["runner_tokens_per_s"] < 1e9 and 0 < result["bare_tokens_per_s"] < 1e9
    # the runner's training loop uses the same kernels as the bare loop: being under half its speed is a regression
    assert result["runner_tokens_per_s"] > 0.5 * result["bare_tokens_per_s"]
    # the whole run is every phase of the job, timed: it holds the training steps and more (fixed costs), never less
    phases = result["phases_s"]
    assert list(phases)[:2] == ["start", "recipe"] and {"fetch", "decrypt", "model", "train", "evaluated"} <= set(phases)
    assert result["runner_run_s"] == pytest.approx(sum(phases.values()), rel=1e-3)
    assert result["runner_run_s"] > result["runner_loop_s"] > 0 and result["fixed_s"] == pytest.approx(result["runner_run_s"] - result["runner_loop_s"])
    assert phases["train"] >= result["runner_loop_s"]  # the train phase holds the loop (and both evaluations)
    assert result["run_vs_bare_loop"] == pytest.approx(result["runner_run_s"] / result["bare_loop_s"]) and result["bare_loop_s"] > 0


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_executor_runs_the_real_worker_process(tmp_path: Path, intents_jsonl: bytes) -> None:
    from llmos_chain.market.executor import Executor, WorkerCommand

    with anvil_provider(tmp_path, gpus=1, price=1) as provider:
        node, world, deployment, signer = provider.node, provider.world, provider.deployment, provider.signer
        setup = provider.setup
        job_id = setup.job(intents_jsonl, _recipe())
        command = WorkerCommand(node.url, deployment, tmp_path / "worker-ks", "worker", tmp_path / "results", tmp_path / "work",
                                {"LLMOS_PRIVATE_KEY": "0x" + signer.key.hex().removeprefix("0x")})
        executor = Executor(command, tmp_path / "logs")
        executor.start(job_id, gpu_slots=[0])
        outcome = executor.wait(job_id, 300)
        assert outcome.ok, outcome.report
        att = Attestation.from_json(outcome.report["attestation"])
        world.act(world.operator).submit(job_id, att, bytes.fromhex(outcome.report["signature"][2:]))
        assert world.job(job_id).state == JobState.SUBMITTED
        assert '"event": "attested"' in outcome.log.read_text()
