"""Trainer checkpoints: resuming from any record is bit-identical to never having stopped (every task and method the
runtime trains), a checkpoint is deterministic bytes, and one that is not this job's is refused by name."""

from __future__ import annotations

import json

import pytest

from llmos_chain.errors import CheckpointError
from llmos_chain.recipe import Recipe
from worker import data, models, train


def _setup(task: str, method: str, config: str, raw: bytes, seed: int = 0) -> tuple[Recipe, train.Trainer]:
    recipe = Recipe.parse(json.dumps({
        "task": task, "method": method, "base_model": {"kind": "config", "name": config},
        "hyper": {"steps": 12, "learning_rate": 1e-2, "batch_size": 64, "max_length": 32, "trajectory_every": 3, "seed": seed},
    }))
    ds = data.parse(raw, recipe)
    tr, _ = data.split(ds, recipe.eval_fraction, recipe.hyper.seed)
    loaded = models.load(recipe, len(ds.label_names) if ds.label_names else None)
    return recipe, train.Trainer(loaded, recipe, train.encode(tr, loaded, recipe.hyper.max_length))


@pytest.mark.parametrize(("task", "method", "config", "dataset"), [
    ("sequence-classification", "lora", "tiny-bert", "intents"),
    ("token-classification", "full", "tiny-bert", "ner"),
    ("causal-lm", "full", "tiny-gpt2", "intents"),
    ("causal-lm", "lora", "tiny-gpt2", "intents"),
])
def test_resuming_from_a_checkpoint_is_bit_identical(task: str, method: str, config: str, dataset: str,
                                                     request: pytest.FixtureRequest) -> None:
    raw = request.getfixturevalue("intents_jsonl" if dataset == "intents" else "ner_jsonl")
    # more steps than one epoch holds, so the resumed run also crosses an epoch's new order
    _, straight = _setup(task, method, config, raw)
    hashes, saved = [], {}
    for step in range(1, 13):
        straight.train_step()
        if step % 3 == 0:
            hashes.append(straight.weights_hash())
            saved[step] = straight.checkpoint()
    assert len(set(hashes)) == 4  # the weights moved
    _, resumed = _setup(task, method, config, raw)
    resumed.restore(saved[6])
    assert resumed.step == 6 and resumed.weights_hash() == hashes[1]
    for _ in range(6):
        resumed.train_step()
    assert resumed.weights_hash() == hashes[3]
    assert resumed.checkpoint() == saved[12]  # the optimizer, schedule, RNGs and data position too, byte for byte


def test_a_checkpoint_of_another_job_or_not_a_checkpoint_is_refused(intents_jsonl: bytes) -> None:
    _, trainer = _setup("sequence-classification", "lora", "tiny-bert", intents_jsonl)
    trainer.train_step()
    blob = trainer.checkpoint()
    _, other_recipe = _setup("sequence-classification", "lora", "tiny-bert", intents_jsonl, seed=1)
    with pytest.raises(CheckpointError, match="not one of this recipe's"):
        other_recipe.restore(blob)
    _, full = _setup("sequence-classification", "full", "tiny-bert", intents_jsonl)
    with pytest.raises(CheckpointError):
        full.restore(blob)
    for junk in (b"", b"\x00" * 64, b"\xff" * 8 + b"{}", blob[:-10]):
        with pytest.raises(CheckpointError):
            trainer.restore(junk)
