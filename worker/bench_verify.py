"""`llmos bench verify`: what a dispute's verification costs, and whether it finds each cheat.

Ratio: a job of two intervals is trained once (its second interval's steps timed as the worker ran them); then one
replay of that interval is timed from the sealed dataset to the compared hash: decrypt, parse, load the base model,
open and restore the sealed checkpoint, run the interval's steps. Same process, same threads, same batches: the
ratio is the verifier's cost against the worker's. Process start and imports are outside both.

Bisection: a job of `intervals` intervals (a record every 5 steps) is trained honestly and by each cheating worker
(`worker.cheats`); `check` replays the ends and bisects. `caught` names each cheat's first diverging interval found
(null: not caught); `bisection_replays` is the most replays any run needed (target <= 8 for 64 intervals).
"""

from __future__ import annotations

import json
import time
from typing import Any

from llmos_chain.crypto import stream
from llmos_chain.demo import sample_dataset
from llmos_chain.recipe import Recipe
from worker import cheats, data, models, train, verify

EVERY = 5


def _recipe(model: str, steps: int, every: int, method: str = "lora") -> Recipe:
    base = {"kind": "pretrained", "name": "minilm-l6"} if model == "minilm-l6" else {"kind": "config", "name": model}
    return Recipe.parse(json.dumps({
        "task": "sequence-classification", "method": method, "base_model": base,
        "hyper": {"steps": steps, "learning_rate": 1e-3 if model == "minilm-l6" else 2e-2, "batch_size": 16, "max_length": 48,
                  "trajectory_every": every},
    }))


class _Kept:
    """Sealed checkpoints in memory, as the runner keeps them on disk."""

    def __init__(self) -> None:
        self.key = stream.new_data_key()
        self.sealed: dict[int, bytes] = {}

    def wanted(self, record: int) -> bool:
        return True

    def put(self, record: int, blob: bytes) -> str:
        import blake3

        self.sealed[record], _ = stream.seal_bytes(blob, self.key)
        return blake3.blake3(self.sealed[record]).hexdigest()

    def opener(self, records: list[dict[str, Any]]) -> verify.CheckpointSource:
        return lambda k: verify.open_checkpoint(self.sealed[k], str(records[k - 1]["checkpoint"]), self.key)


def _train(recipe: Recipe, raw: bytes, trainer: type[train.Trainer] = train.Trainer) -> tuple[train.TrainResult, _Kept, bytes]:
    ds = data.parse(raw, recipe)
    tr, ev = data.split(ds, recipe.eval_fraction, recipe.hyper.seed)
    loaded = models.load(recipe, len(ds.label_names) if ds.label_names else None)
    kept = _Kept()
    original = train.Trainer
    train.Trainer = trainer  # type: ignore[misc]
    try:
        result = train.train(loaded, recipe, train.encode(tr, loaded, recipe.hyper.max_length),
                             train.encode(ev, loaded, recipe.hyper.max_length), checkpoints=kept)
    finally:
        train.Trainer = original  # type: ignore[misc]
    return result, kept, loaded.base_hash


def _records(result: train.TrainResult) -> list[dict[str, Any]]:
    return [json.loads(r.encode()) for r in result.trajectory]


def measure(model: str = "minilm-l6", interval_steps: int = 40, intervals: int = 64, cheat_model: str = "tiny-bert") -> dict[str, Any]:
    raw = sample_dataset().read_bytes()
    # ---- one interval's replay against its original training
    recipe = _recipe(model, 2 * interval_steps, interval_steps)
    result, kept, base_hash = _train(recipe, raw)
    train_s = sum(result.step_seconds[interval_steps:])
    data_key = stream.new_data_key()
    sealed_data, _ = stream.seal_bytes(raw, data_key)
    records = _records(result)
    t0 = time.perf_counter()
    plaintext = stream.open_to_memory(sealed_data, data_key)
    decrypt_s = time.perf_counter() - t0
    session = verify.Session(recipe, base_hash, plaintext, records, kept.opener(records))
    one = session.replay(1)
    replay_s = time.perf_counter() - t0
    assert one.agrees, one.detail  # an honest replay on CPU is exact
    # ---- the bisection, honest and against each cheat
    steps = intervals * EVERY
    cheat_recipe = _recipe(cheat_model, steps, EVERY)
    runs: dict[str, dict[str, Any]] = {}
    for name, trainer in [("honest", train.Trainer), *((n, t) for n, (t, _) in cheats.CHEATS.items())]:
        res, store, base = _train(cheat_recipe, raw, trainer)
        recs = _records(res)
        t = time.perf_counter()
        verdict = verify.check(verify.Session(cheat_recipe, base, raw, recs, store.opener(recs)))
        runs[name] = {"diverging_interval": verdict.diverging, "replays": len(verdict.replays), "seconds": round(time.perf_counter() - t, 3),
                      "expected_interval": None if name == "honest" else cheats.CHEATS[name][1](intervals)}
    return {
        "model": model, "interval_steps": interval_steps, "train_s": round(train_s, 4), "replay_s": round(replay_s, 4),
        "replay_steps_s": round(one.seconds, 4), "decrypt_s": round(decrypt_s, 4), "setup_s": round(session.setup_s, 4),
        "ratio": round(replay_s / train_s, 4), "target_ratio": 1.5,
        "intervals": intervals, "cheat_model": cheat_model,
        "bisection_replays": max(r["replays"] for r in runs.values()), "max_bisection_replays": verify.max_bisection_replays(intervals),
        "honest_agrees": runs["honest"]["diverging_interval"] is None,
        "caught": {name: r["diverging_interval"] for name, r in runs.items() if name != "honest"}, "runs": runs,
        "threads": __import__("torch").get_num_threads(),
    }
