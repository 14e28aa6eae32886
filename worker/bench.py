"""Training throughput through the full runner beside a bare PyTorch loop on the same model, data and batches.

The runner's figure is its training phase inside a real job (embedded chain, sealed dataset, grant,
attestation): tokens/s over the training steps, with its per-step reporting and trajectory hashing.
Decryption and sealing are timed apart. The bare loop is forward, backward, optimizer step, nothing else.
The whole run (every phase from reading the job to the signed attestation, each timed) is reported against the
bare loop's training time, so the runner's fixed costs (fetching, loading, both evaluations, sealing) show.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import Suite, deploy_suite
from llmos_chain.chain.market import JobRequest, MarketClient, WorkerParams
from llmos_chain.crypto.keys import EncryptionKey, KeyKind, Keystore
from llmos_chain.datasets import grant_access, register_dataset, seal_dataset
from worker import data, models, train
from llmos_chain.recipe import Recipe
from worker.runner import run_job


def bench_recipe(steps: int, model: str) -> Recipe:
    base = {"kind": "pretrained", "name": "minilm-l6"} if model == "minilm-l6" else {"kind": "config", "name": model}
    return Recipe.parse(json.dumps({
        "task": "sequence-classification", "method": "full", "base_model": base,
        "hyper": {"steps": steps, "learning_rate": 5e-5, "batch_size": 16, "max_length": 64, "trajectory_every": 10},
    }))


def _runner(recipe: Recipe, dataset: Path, root: Path) -> dict[str, Any]:
    conn = connect()
    a = conn.dev_accounts()
    w3 = conn.w3
    suite = Suite(w3, deploy_suite(Sender(w3, a[0])))
    enc = EncryptionKey.generate()
    MarketClient(suite, Sender(w3, a[4])).register_worker(a[5].address, WorkerParams(a[5].address, "CPU", 1, 16, 1, enc.public_bytes()), 10**18)
    store = Keystore(root / "ks")
    manifest = seal_dataset(dataset, root / "d.sealed", store)
    owner = MarketClient(suite, Sender(w3, a[2]))
    dataset_id, _ = register_dataset(owner, manifest, (root / "d.sealed").as_uri())
    (root / "recipe.json").write_bytes(recipe.canonical_bytes())
    now = int(w3.eth.get_block("latest")["timestamp"])
    client = MarketClient(suite, Sender(w3, a[3]))
    key_id, _ = client.register_client_key(KeyKind.X25519, EncryptionKey.generate().public_bytes())
    request = JobRequest(dataset_id, models.base_model_hash(recipe.base_model, recipe.hyper.seed), recipe.hash(),
                         (root / "recipe.json").as_uri(), 1, 16, now + 86_400, 3600, 10**16, key_id)
    job_id, _ = client.post_job(request)
    MarketClient(suite, Sender(w3, a[4])).assign(job_id, a[5].address)
    grant_access(owner, store, dataset_id, job_id, manifest.key_id)
    result = run_job(suite, job_id, a[5], enc, root / "results", root / "work")
    return {**_steady(result.timings["step_tokens"], result.timings["step_seconds"]),  # type: ignore[arg-type]
            "decrypt_s": result.timings["decrypt_s"], "seal_s": result.timings["seal_s"],
            "run_s": result.timings["total_s"], "loop_s": sum(result.timings["step_seconds"]),  # type: ignore[arg-type]
            "phases": result.timings["phases"]}


WARMUP_STEPS = 3


def _steady(tokens: list[int], seconds: list[float]) -> dict[str, Any]:
    """Tokens and seconds after the first few steps (allocator and kernel warm-up), for both sides alike."""
    return {"tokens": sum(tokens[WARMUP_STEPS:]), "seconds": sum(seconds[WARMUP_STEPS:])}


def _bare(recipe: Recipe, raw: bytes) -> dict[str, Any]:
    """The same model, data split, batches and optimizer, in the plainest loop."""
    ds = data.parse(raw, recipe)
    tr, _ = data.split(ds, recipe.eval_fraction, recipe.hyper.seed)
    loaded = models.load(recipe, len(ds.label_names or []))
    batches = train.encode(tr, loaded, recipe.hyper.max_length)
    torch.manual_seed(recipe.hyper.seed)
    # The same kernels as the runner (deterministic on CPU), so the comparison measures the runner's own machinery.
    train.set_deterministic(recipe.hyper.seed, train.device().type == "cpu")
    model = loaded.model.to(train.device())
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.hyper.learning_rate, weight_decay=recipe.hyper.weight_decay)
    gen = torch.Generator().manual_seed(recipe.hyper.seed)
    n, bs = batches.input_ids.shape[0], recipe.hyper.batch_size
    order, cursor = torch.randperm(n, generator=gen), 0
    step_tokens: list[int] = []
    step_seconds: list[float] = []
    model.train()
    for _ in range(recipe.hyper.steps):
        t0 = time.perf_counter()
        if cursor + bs > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor : cursor + bs]
        cursor += bs
        mask = batches.attention_mask[idx]
        width = int(mask.sum(1).max())
        ids, mask = batches.input_ids[idx][:, :width].contiguous(), mask[:, :width].contiguous()
        step_tokens.append(int(mask.sum()))
        loss = model(input_ids=ids, attention_mask=mask, labels=batches.labels[idx]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_seconds.append(time.perf_counter() - t0)
    return {**_steady(step_tokens, step_seconds), "loop_s": sum(step_seconds)}


def measure(steps: int = 60, model: str = "minilm-l6", repeats: int = 3) -> dict[str, Any]:
    from llmos_chain.demo import sample_dataset

    recipe = bench_recipe(steps, model)
    raw = sample_dataset().read_bytes()
    runner_runs, bare_runs = [], []
    for _ in range(repeats):  # interleaved, best of each, so neither side gets the warm caches alone
        bare_runs.append(_bare(recipe, raw))
        with tempfile.TemporaryDirectory(prefix="llmos-bench-") as tmp:
            runner_runs.append(_runner(recipe, sample_dataset(), Path(tmp)))
    runner = max(runner_runs, key=lambda r: r["tokens"] / r["seconds"])
    bare = max(bare_runs, key=lambda r: r["tokens"] / r["seconds"])
    a, b = runner["tokens"] / runner["seconds"], bare["tokens"] / bare["seconds"]
    return {
        "runner_tokens_per_s": a, "bare_tokens_per_s": b, "overhead": (b - a) / b,
        "device": train.device().type, "model": model, "steps": steps, "batch_size": recipe.hyper.batch_size,
        "tokens_per_run": runner["tokens"], "decrypt_s": runner["decrypt_s"], "seal_s": runner["seal_s"],
        "threads": torch.get_num_threads(),
        # the whole run (read the job, fetch, verify, decrypt, load, evaluate before and after, train, seal, attest)
        # against the bare loop's training steps: what a job costs beyond its training
        "runner_run_s": runner["run_s"], "runner_loop_s": runner["loop_s"], "bare_loop_s": bare["loop_s"],
        "fixed_s": runner["run_s"] - runner["loop_s"], "run_vs_bare_loop": runner["run_s"] / bare["loop_s"],
        "phases_s": runner["phases"],
    }
