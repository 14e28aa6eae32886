"""`llmos dataset …` and `llmos keys …` as a user runs them: JSON out, clean failures, secrets kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import Deployment, Suite
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES, Anvil
from llmos_chain.chain.market import JobState, WorkerParams
from llmos_chain.crypto.keys import Keystore

ENTRY = [sys.executable, "-m", "llmos_chain.cli.main"]


def llmos(tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMOS_KEYSTORE": str(tmp / "keystore")}
    proc = subprocess.run([*ENTRY, *args], capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_seal_open_inspect_and_tamper(tmp_path: Path) -> None:
    src = tmp_path / "intents.jsonl"
    src.write_text("".join(json.dumps({"text": f"where is my order {i}", "label": i % 3}) + "\n" for i in range(5000)))
    sealed = tmp_path / "intents.sealed"
    info = json.loads(llmos(tmp_path, "dataset", "seal", str(src), str(sealed), "--chunk-size", "65536", "--json").stdout)
    assert {"content_root", "cipher_hash", "key_id"} <= set(info)
    assert info["chunks"] == -(-src.stat().st_size // 65536)
    inspected = json.loads(llmos(tmp_path, "dataset", "inspect", str(sealed), "--json").stdout)
    assert inspected["cipher_hash"] == info["cipher_hash"] and inspected["key_id"] == info["key_id"]

    out = tmp_path / "restored.jsonl"
    opened = json.loads(llmos(tmp_path, "dataset", "open", str(sealed), "--key-id", info["key_id"], "--out", str(out), "--json").stdout)
    assert out.read_bytes() == src.read_bytes() and opened["root_checked"] and opened["cipher_hash_checked"]
    to_stdout = llmos(tmp_path, "dataset", "open", str(sealed), "--key-id", info["key_id"], "--out", "-")
    assert to_stdout.stdout == src.read_text()

    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x04
    tampered = tmp_path / "tampered.sealed"
    tampered.write_bytes(bytes(data))
    bad_out = tmp_path / "bad.jsonl"
    proc = llmos(tmp_path, "dataset", "open", str(tampered), "--key-id", info["key_id"], "--out", str(bad_out), check=False)
    assert proc.returncode == 1 and "failed authentication" in proc.stderr
    assert not bad_out.exists() and not list(tmp_path.glob("bad.jsonl*"))
    proc = llmos(tmp_path, "dataset", "open", str(sealed), "--key-id", "00" * 16, "--out", str(bad_out), check=False)
    assert proc.returncode == 1 and "no data key" in proc.stderr


def test_keys_generate_list_export_never_print_private(tmp_path: Path) -> None:
    gen = json.loads(llmos(tmp_path, "keys", "generate", "worker-1", "--json").stdout)
    hybrid = json.loads(llmos(tmp_path, "keys", "generate", "pq", "--kind", "mlkem768-x25519", "--json").stdout)
    assert len(bytes.fromhex(gen["public_key"][2:])) == 32 and len(bytes.fromhex(hybrid["public_key"][2:])) == 1216
    exported = json.loads(llmos(tmp_path, "keys", "export", "pq", "--json").stdout)
    assert exported["public_key"] == hybrid["public_key"] and exported["key_kind"] == 1
    listed = llmos(tmp_path, "keys", "list", "--json").stdout
    private = Keystore(tmp_path / "keystore").load_encryption_key("worker-1").private_bytes.hex()
    for proc_out in (listed, json.dumps(gen), llmos(tmp_path, "keys", "generate", "w2").stdout):
        assert private not in proc_out
    again = llmos(tmp_path, "keys", "generate", "worker-1", check=False)
    assert again.returncode == 1 and "never overwrites" in again.stderr


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_register_and_grant_through_the_cli_on_anvil(tmp_path: Path) -> None:
    with Anvil() as node:
        deployment = tmp_path / "deployment.json"
        llmos(tmp_path, "deploy", "--rpc", node.url, "--out", str(deployment))
        chain = ["--rpc", node.url, "--deployment", str(deployment)]
        src = tmp_path / "d.jsonl"
        src.write_text('{"text": "hi", "label": 0}\n' * 1000)
        sealed = tmp_path / "d.sealed"
        info = json.loads(llmos(tmp_path, "dataset", "seal", str(src), str(sealed), "--json").stdout)
        reg = json.loads(llmos(tmp_path, "dataset", "register", str(sealed), "--uri", sealed.as_uri(), *chain, "--dev-account", "2", "--json").stdout)
        dataset_id = reg["dataset"]

        worker_key = json.loads(llmos(tmp_path, "keys", "generate", "worker", "--json").stdout)
        conn = connect(node.url)
        suite = Suite(conn.w3, Deployment.load(deployment))
        accounts = conn.dev_accounts()
        operator, worker, client = accounts[4], accounts[5], accounts[3]
        from llmos_chain.chain.market import MarketClient
        from tests.helpers import World

        world = World(conn=conn, suite=suite, accounts=accounts, dataset_id=dataset_id)
        params = WorkerParams(worker.address, "L4", 1, 24, 1, bytes.fromhex(worker_key["public_key"][2:]))
        MarketClient(suite, Sender(conn.w3, operator)).register_worker(worker.address, params, 10**18)
        job = world.post(client=client)
        world.assign(job, operator=operator, worker=worker.address)

        wrong = llmos(tmp_path, "dataset", "grant", str(dataset_id), "--job", str(job), "--key-id", info["key_id"], *chain, "--dev-account", "6", check=False)
        assert wrong.returncode == 1 and "JobNotDatasetOwner" in wrong.stderr and "Traceback" not in wrong.stderr
        granted = json.loads(llmos(tmp_path, "dataset", "grant", str(dataset_id), "--job", str(job), "--key-id", info["key_id"], *chain, "--dev-account", "2", "--json").stdout)
        assert granted["worker"] == worker.address
        assert world.job(job).state == JobState.RUNNING
        assert suite.market.functions.canRead(job, worker.address).call()
        # a granted job cannot be dropped (the key is out); an assigned one can, by the owner
        late = llmos(tmp_path, "dataset", "drop", str(dataset_id), "--job", str(job), *chain, "--dev-account", "2", check=False)
        assert late.returncode == 1 and "JobInvalidState" in late.stderr
        other = world.post(client=client)
        world.assign(other, operator=operator, worker=worker.address)
        dropped = json.loads(llmos(tmp_path, "dataset", "drop", str(dataset_id), "--job", str(other), *chain, "--dev-account", "2", "--json").stdout)
        assert dropped["worker"] == worker.address and world.job(other).state == JobState.OPEN
