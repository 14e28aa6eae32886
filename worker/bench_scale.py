"""Data-parallel scaling: the same fine-tuning job (recipe, seed, global batch) on 1, 2, … ranks of a Ray cluster.

Each run goes through the real multi-node path (`worker/distributed.py`): a sealed dataset, the data key wrapped to
each rank's ephemeral key, every rank fetching and decrypting itself, DDP over gloo (NCCL on GPUs), rank 0 sealing
the output. No chain is involved: the figures are the training's. Every rank has one torch thread, the 1-rank run
too, so the efficiency (tokens/s ÷ (ranks × the 1-rank tokens/s)) measures the distributed overhead, not thread
counts. The global batch stays the same (strong scaling): more ranks each get a smaller shard of it.

Without an address, the benchmark starts its own cluster of `nodes` local Ray nodes (`ray.cluster_utils.Cluster`,
CPU slots only) and stops it at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmos_chain.crypto.keys import EncryptionKey, KeyKind, Keystore, OutputContext
from llmos_chain.datasets import seal_dataset
from llmos_chain.recipe import Recipe
from worker import models
from worker.distributed import RayOptions, ShardedJob, train_on_ray

ZERO = "0x" + "00" * 20


def scale_recipe(steps: int, model: str, batch_size: int) -> Recipe:
    base = {"kind": "pretrained", "name": "minilm-l6"} if model == "minilm-l6" else {"kind": "config", "name": model}
    return Recipe.parse(json.dumps({
        "task": "sequence-classification", "method": "full", "base_model": base,
        "hyper": {"steps": steps, "learning_rate": 5e-5, "batch_size": batch_size, "max_length": 64, "trajectory_every": 10},
    }))


def measure(ranks: list[int], steps: int = 30, model: str = "tiny-bert", batch_size: int = 16, nodes: int = 2,
            address: str | None = None) -> dict[str, Any]:
    from llmos_chain.demo import sample_dataset

    recipe = scale_recipe(steps, model, batch_size)
    # a short path: Ray's Unix socket paths under it must stay within the 107-byte limit
    tmp = Path(tempfile.mkdtemp(prefix="llmos-scale-", dir="/tmp" if os.path.isdir("/tmp") else None))
    cluster = None
    try:
        manifest = seal_dataset(sample_dataset(), tmp / "data.sealed", Keystore(tmp / "ks"))
        data_key = Keystore(tmp / "ks").load_data_key(manifest.key_id)
        client = EncryptionKey.generate()
        job = ShardedJob(0, recipe.canonical_bytes(), (tmp / "data.sealed").as_uri(), manifest.cipher_bytes(), manifest.plaintext_size,
                         manifest.root_bytes(), models.base_model_hash(recipe.base_model, recipe.hyper.seed), client.public_bytes(),
                         KeyKind.X25519, OutputContext(0, ZERO, 0, ZERO))
        if address is None:
            cluster, address = _local_cluster(tmp, nodes, max(ranks))
        runs = []
        for r in ranks:
            run = train_on_ray(job, data_key, r, RayOptions(address=address, resource="CPU", threads=1))
            runs.append({"ranks": r, "nodes": run.nodes, "tokens_per_s": run.steady_tokens / run.steady_seconds,
                         "startup_s": run.startup_s, "placement": run.placement, "final_loss": run.result.losses[-1],
                         "weights_hash": run.weights_hash})
        base = next((x["tokens_per_s"] for x in runs if x["ranks"] == 1), None)
        for x in runs:
            x["efficiency"] = x["tokens_per_s"] / (x["ranks"] * base) if base else None
        return {"runs": runs, "model": model, "steps": steps, "global_batch": batch_size, "threads_per_rank": 1,
                "cluster_nodes": nodes if cluster is not None else None, "warmup_steps_excluded": 3}
    finally:
        import ray

        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _local_cluster(tmp: Path, nodes: int, ranks: int) -> tuple[Any, str]:
    """`nodes` Ray nodes on this host, sharing `ranks` CPU slots (at least one each), in a temp dir of our own."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["RAY_TMPDIR"] = str(tmp)
    (tmp / "ray").mkdir(exist_ok=True)
    from ray.cluster_utils import Cluster

    per = [ranks // nodes + (1 if i < ranks % nodes else 0) for i in range(nodes)]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": max(1, per[0]), "include_dashboard": False})
    for n in per[1:]:
        cluster.add_node(num_cpus=max(1, n))
    cluster.wait_for_nodes()
    return cluster, cluster.address
