"""The full runner on the embedded chain: a signed attestation the contract accepts, a sealed output
only the client opens, and every failure named, with no plaintext left on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmos_chain.attestation import verify
from llmos_chain.chain.market import JobState, WorkerParams
from llmos_chain.crypto import stream
from llmos_chain.crypto.keys import EncryptionKey, Keystore, OutputContext, unwrap_key
from llmos_chain.datasets import grant_access, register_dataset, seal_dataset
from llmos_chain.errors import DataError, IntegrityError, ModelError, RecipeError
from tests.helpers import STAKE, World, reverts
from worker import models
from llmos_chain.recipe import Recipe
from worker.runner import failure_report, run_job

MARKER = "where is my order"  # appears in the plaintext; must never appear on disk


def _recipe(**hyper: Any) -> Recipe:
    return Recipe.parse(json.dumps({
        "task": "sequence-classification", "method": "lora", "base_model": {"kind": "config", "name": "tiny-bert"},
        "hyper": {"steps": 40, "learning_rate": 2e-2, "batch_size": 32, "max_length": 48, **hyper},
    }))


@dataclass
class Setup:
    world: World
    tmp: Path
    worker_key: EncryptionKey
    client_key: EncryptionKey
    store: Keystore

    @property
    def signer(self) -> Any:
        return self.world.accounts[8]

    def job(self, raw: bytes, recipe: Recipe | None = None, *, base_hash: bytes | None = None, recipe_text: str | None = None,
            tamper: Callable[[Path], None] | None = None, root: bytes | None = None) -> int:
        w, tmp = self.world, self.tmp
        recipe = recipe or _recipe()
        n = len(list(tmp.glob("job*")))
        folder = tmp / f"job{n}"
        folder.mkdir()
        src = folder / "data.jsonl"
        src.write_bytes(raw)
        manifest = seal_dataset(src, folder / "data.sealed", self.store, chunk_size=4096)
        src.unlink()  # the owner's plaintext copy is not part of what the worker sees
        if root is not None:
            manifest = type(manifest)(**{**manifest.__dict__, "content_root": "0x" + root.hex()})
        owner = w.act(w.owner)
        dataset_id, _ = register_dataset(owner, manifest, (folder / "data.sealed").as_uri())
        if tamper is not None:
            tamper(folder / "data.sealed")
        recipe_path = folder / "recipe.json"
        recipe_path.write_text(recipe_text if recipe_text is not None else recipe.canonical_bytes().decode())
        request = w.request(dataset_id=dataset_id, base_model_hash=base_hash or models.base_model_hash(recipe.base_model, recipe.hyper.seed),
                            recipe_hash=recipe.hash(), recipe_uri=recipe_path.as_uri(), client_key=self.client_key.public_bytes())
        job_id, _ = w.act(w.client).post_job(request)
        w.assign(job_id, worker=self.signer.address)
        grant_access(owner, self.store, dataset_id, job_id, manifest.key_id)
        return job_id

    def run(self, job_id: int, enc_key: EncryptionKey | None = None) -> Any:
        return run_job(self.world.suite, job_id, self.signer, enc_key or self.worker_key, self.tmp / "results", self.tmp / "work")

    def assert_no_plaintext_on_disk(self) -> None:
        for path in self.tmp.rglob("*"):
            if path.is_file():
                assert MARKER.encode() not in path.read_bytes(), f"plaintext found in {path}"


@pytest.fixture
def setup(world: World, tmp_path: Path) -> Setup:
    worker_key, client_key = EncryptionKey.generate(), EncryptionKey.generate()
    signer = world.accounts[8]
    params = WorkerParams(signer.address, "CPU", 1, 24, 1, worker_key.public_bytes())
    world.act(world.operator).register_worker(signer.address, params, STAKE)
    return Setup(world, tmp_path, worker_key, client_key, Keystore(tmp_path / "owner-ks"))


def test_run_attests_what_the_contract_accepts(setup: Setup, intents_jsonl: bytes) -> None:
    w = setup.world
    job_id = setup.job(intents_jsonl)
    result = setup.run(job_id)
    att, sig = result.attestation, result.signature
    verify(att, sig, setup.signer.address, w.conn.chain_id, w.suite.market.address)  # eth-account agrees
    assert result.metrics["after"] > result.metrics["before"]
    bundle = result.bundle
    assert {p.name for p in bundle.iterdir()} == {"output.sealed", "output.key", "metrics.json", "trajectory.jsonl", "attestation.json"}

    changed = type(att)(**{**att.__dict__, "metrics_hash": b"\x01" * 32})
    with reverts("JobInvalidAttestationSignature", jobId=job_id):
        w.act(w.operator).submit(job_id, changed, sig)  # one field changed: the contract refuses
    w.act(w.operator).submit(job_id, att, sig)
    assert w.job(job_id).state == JobState.SUBMITTED

    # only the client opens the output, and it is the trained adapter
    from safetensors.torch import load

    context = OutputContext(w.conn.chain_id, w.suite.market.address, job_id, w.client.address)
    key = unwrap_key((bundle / "output.key").read_bytes(), setup.client_key, context)
    weights = load(bytes(stream.open_to_memory((bundle / "output.sealed").read_bytes(), key)))
    assert any("lora_" in name for name in weights)
    setup.assert_no_plaintext_on_disk()


def test_two_cpu_runs_give_the_same_output_hash_and_trajectory_root(setup: Setup, intents_jsonl: bytes) -> None:
    first = setup.run(setup.job(intents_jsonl))
    second = setup.run(setup.job(intents_jsonl))
    # The sealed output differs (a fresh key and salt each time); the weights inside are bit-identical.
    assert first.metrics["weights_hash"] == second.metrics["weights_hash"]
    assert first.attestation.trajectory_root == second.attestation.trajectory_root
    assert first.attestation.metrics_hash == second.attestation.metrics_hash
    assert first.attestation.output_hash != second.attestation.output_hash


def _expect(setup: Setup, job_id: int, error: type, match: str, enc_key: EncryptionKey | None = None) -> dict[str, Any]:
    with pytest.raises(error, match=match) as caught:
        setup.run(job_id, enc_key)
    setup.assert_no_plaintext_on_disk()
    return failure_report(caught.value)


def test_wrong_worker_key(setup: Setup, intents_jsonl: bytes) -> None:
    report = _expect(setup, setup.job(intents_jsonl), IntegrityError, "cannot unwrap", enc_key=EncryptionKey.generate())
    assert report["reason"] == 3 and report["details_hash"].startswith("0x")


def test_tampered_dataset(setup: Setup, intents_jsonl: bytes) -> None:
    def flip(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        raw[200] ^= 1
        path.write_bytes(bytes(raw))

    report = _expect(setup, setup.job(intents_jsonl, tamper=flip), IntegrityError, "cipher hash mismatch")
    assert report["reason"] == 2 and report["data_fault"]


def test_content_root_mismatch(setup: Setup, intents_jsonl: bytes) -> None:
    _expect(setup, setup.job(intents_jsonl, root=b"\x07" * 32), IntegrityError, "content root mismatch")


def test_malformed_recipe(setup: Setup, intents_jsonl: bytes) -> None:
    _expect(setup, setup.job(intents_jsonl, recipe_text="{\"task\": \"dance\"}"), RecipeError, "invalid recipe")
    other = _recipe(seed=5).canonical_bytes().decode()
    _expect(setup, setup.job(intents_jsonl, recipe_text=other), IntegrityError, "recipe hash mismatch")


def test_model_hash_mismatch(setup: Setup, intents_jsonl: bytes) -> None:
    report = _expect(setup, setup.job(intents_jsonl, base_hash=b"\x09" * 32), ModelError, "base model hash mismatch")
    assert report["reason"] == 5 and not report["data_fault"]


def test_labels_missing(setup: Setup) -> None:
    rows = [{"text": f"{MARKER} #{i}"} for i in range(20)]
    report = _expect(setup, setup.job("\n".join(json.dumps(r) for r in rows).encode()), DataError, "no 'label' field")
    assert report["reason"] == 1 and report["data_fault"]


def test_failure_details_on_chain_carry_nothing_local() -> None:
    import blake3

    from llmos_chain.errors import DataError, IntegrityError
    from worker.runner import failure_report

    secret = DataError("row 7: label 'acct-4417-9932' is not one of the labels; see /home/op/work/7/data")
    other = DataError("line 3 is not JSON")
    report = failure_report(secret)
    assert report["details_hash"] == failure_report(other)["details_hash"]  # the message never reaches the chain
    assert report["details_hash"] == "0x" + blake3.blake3(b"llmos-failure/1:1:DataError").hexdigest()
    assert failure_report(IntegrityError("cipher hash mismatch: /x hashes to 0xab"))["details_hash"] != report["details_hash"]
    assert "acct-4417" in report["message"]  # kept locally for the operator's log
