"""The devnet setup of the README, each role its own process: devnet, coordinator, owner's agent; the client uses only the CLI."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmos_chain.chain.connect import ANVIL_DEV_KEYS
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, free_port

pytestmark = [pytest.mark.slow, pytest.mark.anvil,
              pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")]

RECIPE = {"task": "sequence-classification", "method": "lora", "base_model": {"kind": "config", "name": "tiny-bert"},
          "hyper": {"steps": 30, "learning_rate": 2e-2, "batch_size": 32, "max_length": 48}}


def _address(index: int) -> str:
    from eth_account import Account

    return str(Account.from_key(ANVIL_DEV_KEYS[index]).address)


class Roles:
    def __init__(self, tmp: Path, rpc: str) -> None:
        self.tmp, self.rpc = tmp, rpc
        self.deployment = tmp / "deployment.json"
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, keystore: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")}
        return {**env, "LLMOS_RPC_URL": self.rpc, "LLMOS_DEPLOYMENT": str(self.deployment), "LLMOS_KEYSTORE": str(self.tmp / keystore)}

    def cli(self, keystore: str, *args: str, ok: bool = True) -> Any:
        proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", *args], capture_output=True, text=True, timeout=180,
                              env=self.env(keystore), cwd=self.tmp)
        if ok:
            assert proc.returncode == 0, f"llmos {' '.join(args)}: {proc.stderr}"
        return json.loads(proc.stdout) if ok and "--json" in args else proc

    def daemon(self, keystore: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "llmos_chain.cli.main", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=self.env(keystore), cwd=self.tmp, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    port = free_port()
    r = Roles(tmp_path, f"http://127.0.0.1:{port}")
    devnet = r.daemon("none", "devnet", "devnet", "--port", str(port), "--out", str(r.deployment))
    deadline = time.monotonic() + 60
    while not r.deployment.exists():
        assert devnet.poll() is None and time.monotonic() < deadline, r.log("devnet")
        time.sleep(0.2)
    try:
        yield r
    finally:
        for proc in reversed(r.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        assert devnet.returncode == 0, r.log("devnet")  # Ctrl-C stops the devnet cleanly


def test_client_owner_agent_and_coordinator_in_separate_processes(roles: Roles, tmp_path: Path) -> None:
    from llmos_chain.demo import sample_dataset

    # the data owner seals and registers the dataset
    sealed = tmp_path / "intents.sealed"
    manifest = roles.cli("owner-ks", "dataset", "seal", str(sample_dataset()), str(sealed), "--chunk-size", "4096", "--json")
    dataset = roles.cli("owner-ks", "dataset", "register", str(sealed), "--uri", sealed.as_uri(), "--dev-account", "2", "--json")
    dataset_id = int(dataset["dataset"])

    # the provider: an HPKE key for its worker, the coordinator config, registration, the daemon with its API
    roles.cli("provider-ks", "keys", "generate", "worker")
    api_port = free_port()
    config = {"workers": [{"address": _address(5), "gpus": 1, "mem_gib": 24, "price_per_gpu_hour_wei": 10**14,
                           "enc_key": "worker", "dev_account": 5}],
              "state": str(tmp_path / "coordinator.db"), "results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"),
              "work_dir": str(tmp_path / "work"), "keystore": str(tmp_path / "provider-ks"), "poll_interval_s": 0.5, "file_roots": [str(tmp_path)],
              "api_port": api_port}
    (tmp_path / "coordinator.json").write_text(json.dumps(config))
    roles.cli("provider-ks", "coordinator", "register", "--config", "coordinator.json", "--dev-account", "4")
    roles.daemon("provider-ks", "coordinator", "coordinator", "run", "--config", "coordinator.json", "--dev-account", "4")

    # the owner's agent: grants to this provider's operator only, at most 5 jobs
    agent = {"state": str(tmp_path / "agent.db"), "keystore": str(tmp_path / "owner-ks"), "poll_interval_s": 0.5,
             "grants": {"datasets": {str(dataset_id): manifest["key_id"]}, "operators": [_address(4)], "max_jobs": 5, "dev_account": 2}}
    (tmp_path / "agent.json").write_text(json.dumps(agent))
    roles.daemon("owner-ks", "agent", "agent", "run", "--config", "agent.json")

    # the client: CLI only
    roles.cli("client-ks", "keys", "generate", "client")
    (tmp_path / "recipe.json").write_text(json.dumps(RECIPE))
    posted = roles.cli("client-ks", "job", "post", "--dataset", str(dataset_id), "--recipe", "recipe.json", "--client-key", "client",
                       "--amount", str(10**16), "--dev-account", "3", "--json")
    job = str(posted["job"])
    deadline = time.monotonic() + 240
    status = {}
    while time.monotonic() < deadline:
        status = roles.cli("client-ks", "job", "status", job, "--json")
        if status["state"] in ("submitted", "failed", "expired"):
            break
        time.sleep(1)
    assert status.get("state") == "submitted", (status, roles.log("coordinator"), roles.log("agent"))
    assert status["worker"] == _address(5)
    events = [h["event"] for h in status["history"]]
    assert events[:4] == ["JobPosted", "JobAssigned", "AccessGranted", "ResultSubmitted"]

    api = f"http://127.0.0.1:{api_port}"
    audit = roles.cli("client-ks", "audit", job, "--from", api, "--json")
    assert audit["verdict"] == "pass", audit["checks"]
    accepted = roles.cli("client-ks", "job", "accept", job, "--dev-account", "3", "--json")
    assert accepted["state"] == "settled"
    fetched = roles.cli("client-ks", "job", "fetch", job, "--from", api, "--client-key", "client", "--out", "model.safetensors", "--json")
    weights = (tmp_path / "model.safetensors").read_bytes()
    assert fetched["bytes"] == len(weights) and (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o600
    import blake3

    assert fetched["weights_hash"] == "0x" + blake3.blake3(weights).hexdigest()  # the attested weights, checked on fetch
    (length,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8 : 8 + length])
    assert json.loads(header["__metadata__"]["llmos"])["format"] == "llmos-output/1"
    assert any("lora_" in name for name in header)

    # a wrong client key cannot open it; a job id with no result is a clear error
    roles.cli("client-ks", "keys", "generate", "other")
    wrong = roles.cli("client-ks", "job", "fetch", job, "--from", api, "--client-key", "other", "--out", "x.safetensors", ok=False)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr and not (tmp_path / "x.safetensors").exists()
    missing = roles.cli("client-ks", "job", "fetch", "99", "--from", api, "--client-key", "client", ok=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr

    # the coordinator pulls its operator's earnings once the job settles
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        from web3 import Web3

        w3 = Web3(Web3.HTTPProvider(roles.rpc))
        from llmos_chain.chain.deploy import Deployment, Suite

        suite = Suite(w3, Deployment.load(roles.deployment))
        if suite.market.functions.credits("0x" + "00" * 20, _address(4)).call() == 0:
            break
        time.sleep(0.5)
    assert suite.market.functions.credits("0x" + "00" * 20, _address(4)).call() == 0, roles.log("coordinator")
