"""The owner's flow on chain: seal, register, grant to the assigned worker, and the worker's recovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.market import JobState, MarketClient, WorkerParams
from llmos_chain.crypto import stream
from llmos_chain.crypto.keys import EncryptionKey, Keystore, KeyKind
from llmos_chain.datasets import Manifest, grant_access, manifest_path, plan_grant, recover_data_key, register_dataset, seal_dataset
from llmos_chain.errors import ConfigError, SealedDataError
from tests.helpers import STAKE, World


@pytest.mark.parametrize("kind", list(KeyKind))
def test_seal_register_grant_recover(world: World, tmp_path: Path, kind: KeyKind) -> None:
    store = Keystore(tmp_path / "owner-ks")
    src = tmp_path / "support.jsonl"
    src.write_bytes(os.urandom(100_000))
    manifest = seal_dataset(src, tmp_path / "support.sealed", store, chunk_size=4096)
    assert Manifest.load(manifest_path(tmp_path / "support.sealed")) == manifest
    owner = MarketClient(world.suite, Sender(world.w3, world.owner))
    dataset_id, _ = register_dataset(owner, manifest, (tmp_path / "support.sealed").as_uri())
    record = world.suite.datasets.functions.getDataset(dataset_id).call()
    assert record[2] == manifest.root_bytes() and record[3] == manifest.cipher_bytes()

    worker_key = EncryptionKey.generate(kind)
    worker = world.accounts[8]
    params = WorkerParams(worker.address, "L4", 1, 24, 1, worker_key.public_bytes(), kind)
    world.act(world.operator).register_worker(worker.address, params, STAKE)
    job = world.post(dataset_id=dataset_id)
    with pytest.raises(ConfigError, match="is open, not assigned"):
        plan_grant(world.suite, dataset_id, job)
    world.assign(job, worker=worker.address)
    plan, _ = grant_access(owner, store, dataset_id, job, manifest.key_id)
    assert plan.worker == worker.address and plan.key_kind is kind
    assert world.job(job).state == JobState.RUNNING

    data_key = recover_data_key(world.suite, dataset_id, job, worker.address, worker_key)
    plain = stream.open_to_memory((tmp_path / "support.sealed").read_bytes(), data_key, manifest.root_bytes())
    assert bytes(plain) == src.read_bytes()
    with pytest.raises(SealedDataError, match="cannot unwrap"):
        recover_data_key(world.suite, dataset_id, job, worker.address, EncryptionKey.generate(kind))

    # the grant is for the run window only: once the job leaves Running the worker holds no grant
    att = world.attestation(job, worker=worker.address, dataset_root=manifest.root_bytes())
    world.act(world.operator).submit(job, att, world.sign(att, key=worker))
    with pytest.raises(SealedDataError, match="holds no running grant"):
        recover_data_key(world.suite, dataset_id, job, worker.address, worker_key)
    # and another worker never held one
    with pytest.raises(SealedDataError, match="holds no running grant"):
        recover_data_key(world.suite, dataset_id, job, world.worker, worker_key)


def test_grant_for_a_job_on_another_dataset_is_refused(world: World, tmp_path: Path) -> None:
    job = world.post()
    world.assign(job)
    with pytest.raises(ConfigError, match="is for dataset"):
        plan_grant(world.suite, world.dataset_id + 1, job)
