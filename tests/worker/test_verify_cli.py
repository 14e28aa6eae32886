"""`llmos verify` and `llmos arbiter run` as a user runs them, on anvil: an honest result agrees (exit 0), a cheat is
named (exit 1), a job without the owner's grant cannot be verified (exit 2, nothing decided), and the arbiter's daemon
resolves the cheat against the worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_chain.agent import Agent, GrantPolicy
from llmos_chain.arbiter import Arbiter, ArbiterPolicy
from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES
from llmos_chain.chain.market import JobState, get_job
from llmos_chain.crypto.keys import EncryptionKey, Keystore
from llmos_chain.datasets import Manifest, manifest_path
from llmos_chain.store import Store
from tests.worker.conftest import anvil_provider
from tests.worker.test_verification import _recipe
from worker import cheats, train


@pytest.mark.anvil
@pytest.mark.slow
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_verify_and_the_arbiter_on_anvil(tmp_path: Path, intents_jsonl: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    with anvil_provider(tmp_path) as provider:
        setup, w = provider.setup, provider.world
        key = EncryptionKey.generate()
        Keystore(tmp_path / "arbiter-ks").save_encryption_key("arbiter", key)
        Arbiter(w.suite, Store(tmp_path / "setup.db"), w.arbiter, key, ArbiterPolicy(("x",)), tmp_path / "r").ensure_key()

        def submitted(trainer: type[train.Trainer] | None) -> int:
            job_id = setup.job(intents_jsonl, _recipe())
            with monkeypatch.context() as m:
                if trainer is not None:
                    m.setattr(train, "Trainer", trainer)
                result = setup.run(job_id)
            w.act(w.operator).submit(job_id, result.attestation, result.signature)
            w.act(w.client).dispute(job_id, b"\x01" * 32)
            return job_id

        honest, cheat, ungranted = submitted(None), submitted(cheats.FewerSteps), submitted(None)
        grants = {}
        for job_id in (honest, cheat):
            view = get_job(w.suite, job_id)
            sealed = sorted(tmp_path.glob("job*/data.sealed"))[[honest, cheat, ungranted].index(job_id)]
            grants[view.dataset_id] = Manifest.load(manifest_path(sealed)).key_id
        agent = Agent(w.suite, Store(tmp_path / "agent.db"), owner=w.owner, keystore=setup.store, grants=GrantPolicy(grants))
        for _ in range(3):
            agent.step()

        def verify(job_id: int) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "verify", str(job_id), "--key", "arbiter", "--from",
                                   str(tmp_path / "results"), "--keystore", str(tmp_path / "arbiter-ks"), "--rpc", provider.node.url,
                                   "--deployment", str(provider.deployment), "--json"], capture_output=True, text=True, timeout=600)

        ok = verify(honest)
        assert ok.returncode == 0, ok.stderr[-2000:]
        assert json.loads(ok.stdout)["agrees"] is True and json.loads(ok.stdout)["replay_count"] == 2  # the ends (CLI default)
        bad = verify(cheat)
        assert bad.returncode == 1, bad.stderr[-2000:]
        found = json.loads(bad.stdout)
        assert found["diverging_interval"] == 3 and found["expected"] != found["replayed"]
        nogrant = verify(ungranted)
        assert nogrant.returncode == 2 and "has not granted" in json.loads(nogrant.stdout)["error"]

        config = tmp_path / "arbiter.json"
        config.write_text(json.dumps({"dev_account": 1, "encryption_key": "arbiter", "keystore": str(tmp_path / "arbiter-ks"),
                                      "results": [str(tmp_path / "results")], "state": str(tmp_path / "arbiter.db"),
                                      "reports": str(tmp_path / "reports"), "margin_s": 60}))
        run = [sys.executable, "-m", "llmos_chain.cli.main", "arbiter", "run", "--config", str(config), "--rpc", provider.node.url,
               "--deployment", str(provider.deployment), "--once", "--json"]
        first = subprocess.run(run, capture_output=True, text=True, timeout=900)
        assert first.returncode == 0, first.stderr[-2000:]
        decided = json.loads(first.stdout)
        assert decided["resolved"] == {str(honest): True, str(cheat): False} and decided["waiting"] == [ungranted]
        second = subprocess.run(run, capture_output=True, text=True, timeout=300)  # confirms; decides nothing twice
        assert second.returncode == 0 and json.loads(second.stdout)["resolved"] == {}
        assert w.job(honest).state is JobState.SETTLED and w.job(cheat).state is JobState.REFUNDED
        assert w.job(ungranted).state is JobState.DISPUTED
        assert json.loads((tmp_path / "reports" / f"{cheat}.json").read_text())["diverging_interval"] == 3
