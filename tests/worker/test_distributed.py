"""Multi-node data-parallel training on a real Ray cluster of two local nodes (one CPU slot each): a job larger than
any node is placed across both, trained with DDP over gloo, submitted, audited and settled on the embedded chain;
2 ranks match 1 rank within a stated tolerance and repeat bit for bit; a node lost mid-job ends in a retry, never
in a hang or a partial submission, and the retry finishes the job once a node is back."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

from llmos_chain.agent import Agent, GrantPolicy
from llmos_chain.audit import client_audit
from llmos_chain.basemodel import base_model_hash
from llmos_chain.chain.bridge import ProviderBridge
from llmos_chain.chain.market import JobState, WorkerParams
from llmos_chain.crypto import stream
from llmos_chain.crypto.keys import EncryptionKey, KeyKind, Keystore, OutputContext, unwrap_key
from llmos_chain.datasets import register_dataset, seal_dataset
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import WorkerCommand
from llmos_chain.market.ray_executor import RayExecutor
from llmos_chain.recipe import Recipe
from llmos_chain.store import Store
from tests.helpers import STAKE, World

pytestmark = pytest.mark.slow

ZERO = "0x" + "00" * 20
#: 2 ranks against 1 with the same recipe, seed and global batch, dropout off: the gradients are the same sums in another
#: order (and per-shard padding widths), so float32 rounding differs; every step's loss and every weight stay this
#: close. (With dropout on, each rank draws its own masks for its shard: the runs are equivalent in distribution,
#: not number for number.)
LOSS_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-5


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Two Ray nodes on this host, one CPU slot each, in a temp dir of our own; shut down after the test."""
    tmp = Path(tempfile.mkdtemp(prefix="llmos-ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    (tmp / "ray").mkdir()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp))
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        import ray

        ray.shutdown()
        c.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _recipe(steps: int = 12, base: dict[str, Any] | None = None) -> Recipe:
    return Recipe.parse(json.dumps({
        "task": "sequence-classification", "method": "full", "base_model": base or {"kind": "config", "name": "tiny-bert"},
        "hyper": {"steps": steps, "learning_rate": 1e-3, "batch_size": 16, "max_length": 48, "trajectory_every": 4},
    }))


def _tiny_bert_without_dropout(directory: Path) -> dict[str, Any]:
    """A local base model: the tiny BERT with dropout off, so 1 and 2 ranks compute the same function."""
    import torch
    import transformers

    from llmos_chain.basemodel import TINY_CONFIGS

    config = {k: v for k, v in TINY_CONFIGS["tiny-bert"].items() if k != "model_type"}
    torch.manual_seed(0)
    transformers.AutoModel.from_config(transformers.AutoConfig.for_model(
        "bert", **config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).save_pretrained(directory)
    transformers.ByT5Tokenizer().save_pretrained(directory)
    return {"kind": "local", "path": str(directory)}


# ------------------------------------------------------------------------------------------ correctness of the ranks


def test_two_ranks_match_one_rank_and_repeat_bit_for_bit(cluster: Any, intents_jsonl: bytes, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load

    from worker import models
    from worker.distributed import RayOptions, ShardedJob, train_on_ray

    (tmp_path / "data.jsonl").write_bytes(intents_jsonl)
    manifest = seal_dataset(tmp_path / "data.jsonl", tmp_path / "data.sealed", Keystore(tmp_path / "ks"))
    data_key = Keystore(tmp_path / "ks").load_data_key(manifest.key_id)
    recipe, client = _recipe(base=_tiny_bert_without_dropout(tmp_path / "base")), EncryptionKey.generate()
    context = OutputContext(0, ZERO, 7, ZERO)
    job = ShardedJob(7, recipe.canonical_bytes(), (tmp_path / "data.sealed").as_uri(), manifest.cipher_bytes(), manifest.plaintext_size,
                     manifest.root_bytes(), models.base_model_hash(recipe.base_model, recipe.hyper.seed), client.public_bytes(),
                     KeyKind.X25519, context)
    options = RayOptions(address=cluster.address, resource="CPU", start_timeout_s=60, collective_timeout_s=60, run_timeout_s=120)
    one = train_on_ray(job, data_key, 1, options)
    two = train_on_ray(job, data_key, 2, options)
    again = train_on_ray(job, data_key, 2, options)

    assert one.nodes == 1 and two.nodes == 2 and len(set(two.placement)) == 2  # 2 slots, 1 per node: across both
    # deterministic mode: two 2-rank runs give the same weights and trajectory, bit for bit
    assert two.weights_hash == again.weights_hash and two.result.trajectory_root == again.result.trajectory_root
    assert two.weights_hash != one.weights_hash  # (float32 sums in another order: not the same bits as 1 rank)
    # the global batch is split and the gradients averaged: every step's loss is 1 rank's within the tolerance
    assert len(two.result.losses) == len(one.result.losses) == recipe.hyper.steps
    assert max(abs(a - b) for a, b in zip(one.result.losses, two.result.losses, strict=True)) < LOSS_TOLERANCE
    assert one.tokens == two.tokens  # the same examples were trained on, split over the ranks

    def weights(run: Any) -> dict[str, Any]:
        key = unwrap_key(run.wrapped_output_key, client, context)
        return load(bytes(stream.open_to_memory(run.sealed_output, key)))

    # 1 rank through Ray is the one-host code path: the same bits as `train.train` here, on one thread like a rank
    from worker import data as data_mod
    from worker import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = data_mod.parse(intents_jsonl, recipe)
        tr, ev = data_mod.split(dataset, recipe.eval_fraction, recipe.hyper.seed)
        loaded = models.load(recipe, len(dataset.label_names or []))
        local = train.train(loaded, recipe, train.encode(tr, loaded, recipe.hyper.max_length), train.encode(ev, loaded, recipe.hyper.max_length),
                            label_names=dataset.label_names)
    finally:
        torch.set_num_threads(threads)
    assert one.weights_hash == "0x" + blake3.blake3(local.output).hexdigest()
    assert one.result.trajectory_root == local.trajectory_root

    # the job's own fault is the same on every rank and stays the job's: reported, not retried as a node fault
    from dataclasses import replace

    from llmos_chain.errors import IntegrityError

    with pytest.raises(IntegrityError) as caught:
        train_on_ray(replace(job, content_root=b"\x07" * 32), data_key, 2, options)
    assert caught.value.reason == 2 and not caught.value.transient

    w1, w2 = weights(one), weights(two)
    assert w1.keys() == w2.keys()
    drift = max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1)
    torch.manual_seed(recipe.hyper.seed)
    start = models.load(recipe, len(w1["classifier.bias"])).model.state_dict()
    moved = max(float((w1[k].float() - start[k].float()).abs().max()) for k in w1 if k in start)
    assert drift < WEIGHT_TOLERANCE < moved  # close to 1 rank, while training moved the weights far more


# ------------------------------------------------------------------------------------------ the job, end to end


@dataclass
class Provider:
    world: World
    tmp: Path
    signer: Any
    owner_store: Keystore
    client_key: EncryptionKey
    coordinator: Coordinator
    agent: Agent
    dataset_id: int
    manifest: Any
    bridge: ProviderBridge

    def post(self, recipe: Recipe, gpus: int = 2) -> int:
        w = self.world
        path = self.tmp / f"recipe-{recipe.hash().hex()[:8]}.json"
        path.write_bytes(recipe.canonical_bytes())
        return w.post(dataset_id=self.dataset_id, recipe_hash=recipe.hash(), recipe_uri=path.as_uri(), gpu_count=gpus,
                      base_model_hash=base_model_hash(recipe.base_model, recipe.hyper.seed), client_key=self.client_key.public_bytes())

    def step(self) -> None:
        self.coordinator.step()
        self.agent.step()

    def log(self, job_id: int) -> str:
        path = self.tmp / "logs" / f"job-{job_id}.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def provider(world: World, cluster: Any, intents_jsonl: bytes, tmp_path: Path) -> Iterator[Provider]:
    """One on-chain worker whose slot count (2) covers the cluster (2 nodes × 1 slot), driven by a coordinator with
    the Ray executor; the owner's agent grants by policy."""
    w = world
    signer = w.accounts[8]
    worker_key, client_key = EncryptionKey.generate(), EncryptionKey.generate()
    w.act(w.operator).register_worker(signer.address, WorkerParams(signer.address, "CPU", 2, 24, 1, worker_key.public_bytes()), STAKE)
    owner_store = Keystore(tmp_path / "owner-ks")
    (tmp_path / "data.jsonl").write_bytes(intents_jsonl)
    manifest = seal_dataset(tmp_path / "data.jsonl", tmp_path / "data.sealed", owner_store, chunk_size=4096)
    (tmp_path / "data.jsonl").unlink()
    dataset_id, _ = register_dataset(w.act(w.owner), manifest, (tmp_path / "data.sealed").as_uri())
    deployment = tmp_path / "deployment.json"
    w.suite.deployment.save(deployment)
    Keystore(tmp_path / "worker-ks").save_encryption_key("worker", worker_key)
    with ProviderBridge(w.w3) as bridge:
        command = WorkerCommand(bridge.url, deployment, tmp_path / "worker-ks", "worker", tmp_path / "results", tmp_path / "work",
                                {"LLMOS_PRIVATE_KEY": "0x" + bytes(signer.key).hex()})
        executor = RayExecutor(command, tmp_path / "logs", cluster.address, time_limit_s=240, resource="CPU", start_timeout_s=30,
                               collective_timeout_s=30)
        coordinator = Coordinator(w.suite, Store(tmp_path / "coordinator.db"), w.operator, [WorkerConfig(signer.address, 2, 24, 1)],
                                  executor)
        agent = Agent(w.suite, Store(tmp_path / "agent.db"), owner=w.owner, keystore=owner_store,
                      grants=GrantPolicy({dataset_id: manifest.key_id}))
        p = Provider(w, tmp_path, signer, owner_store, client_key, coordinator, agent, dataset_id, manifest, bridge)
        try:
            yield p
        finally:
            for job_id in list(executor.running):
                executor.cancel(job_id)
                executor.wait(job_id, 30)


def test_a_job_larger_than_any_node_runs_across_nodes_and_settles(provider: Provider) -> None:
    p, w = provider, provider.world
    job_id = p.post(_recipe(steps=16))
    deadline = time.monotonic() + 150
    while w.job(job_id).state is not JobState.SUBMITTED:
        assert time.monotonic() < deadline, p.log(job_id)[-3000:]
        p.step()
        time.sleep(0.2)
    bundle = p.tmp / "results" / str(job_id)
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["ranks"] == 2
    events = [json.loads(line) for line in p.log(job_id).splitlines() if line.startswith("{")]
    placed = next(e for e in events if e.get("event") == "ranks")["placement"]
    assert len(set(placed)) == 2  # demand 2 > 1 slot per node: one rank on each node

    data_key = p.owner_store.load_data_key(p.manifest.key_id)
    report = client_audit(w.suite, job_id, bundle, p.client_key, data_key)
    assert report.passed, [c for c in report.checks if not c.ok]  # signature, trajectory, output = attested weights …
    w.act(w.client).accept(job_id)
    for _ in range(3):
        p.step()
    assert w.job(job_id).state is JobState.SETTLED
    outbox = {r["key"].split(":")[0]: r["status"] for r in p.coordinator.store.db.execute("SELECT key, status FROM outbox")}
    assert outbox["submit"] == "confirmed"


def test_a_node_lost_mid_job_is_retried_with_nothing_submitted_then_finishes(provider: Provider, cluster: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from llmos_chain.market import coordinator as coordinator_module

    monkeypatch.setattr(coordinator_module, "RETRY_AFTER_S", 1.0)  # the pause before a retry (15 s in production)
    p, w = provider, provider.world
    job_id = p.post(_recipe(steps=600))  # long enough to still be training when the node goes
    deadline = time.monotonic() + 90
    while '"event": "ranks"' not in p.log(job_id):
        assert time.monotonic() < deadline, p.log(job_id)[-3000:]
        p.step()
        time.sleep(0.2)
    time.sleep(4)  # the ranks fetch, decrypt, load and start training
    assert job_id in p.coordinator.executor.running
    worker_node = next(n for n in cluster.worker_nodes)
    cluster.remove_node(worker_node)  # one rank's node (and its raylet and processes) gone
    lost = time.monotonic()

    status = None
    while status != "retry":
        assert time.monotonic() - lost < 90, ("no outcome after the node was lost", p.log(job_id)[-3000:])
        p.step()
        row = p.coordinator.store.db.execute("SELECT status, report FROM runs WHERE job_id = ?", (job_id,)).fetchone()
        status = row["status"] if row else None
        assert status in (None, "running", "retry"), row["report"]
        time.sleep(0.2)
    report = json.loads(row["report"])
    assert report["transient"] is True and "while training" in report["message"], report  # lost, or its peer failed
    assert not (p.tmp / "results" / str(job_id)).exists()  # no partial result
    assert w.job(job_id).state is JobState.RUNNING  # nothing submitted, nothing reported on chain
    keys = [r["key"] for r in p.coordinator.store.db.execute("SELECT key FROM outbox")]
    assert not any(k.startswith(("submit:", "fail:")) for k in keys)

    # capacity comes back (a replacement node joins): the retry places both ranks again and the job is submitted once
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    deadline = time.monotonic() + 150
    while w.job(job_id).state is not JobState.SUBMITTED:
        assert time.monotonic() < deadline, p.log(job_id)[-3000:]
        p.step()
        time.sleep(0.2)
    assert json.loads((p.tmp / "results" / str(job_id) / "metrics.json").read_text())["ranks"] == 2
    p.coordinator.follower.poll()
    assert [e.name for e in p.coordinator.store.events(job_id)].count("ResultSubmitted") == 1
