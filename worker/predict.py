"""Use a fine-tuned output: load the base model, apply the job's weights, classify some texts.

What a client does after `llmos job fetch`: the output file holds the adapter (LoRA) or all weights
(full fine-tuning) in safetensors, with the label names in its `llmos` metadata.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import torch

from llmos_chain.errors import ModelError, RecipeError
from llmos_chain.recipe import Method, Recipe, Task
from worker import models, train


def output_metadata(weights: bytes) -> dict[str, Any]:
    """The `llmos` metadata of a safetensors output (header: 8-byte little-endian length, then JSON)."""
    try:
        (length,) = struct.unpack("<Q", weights[:8])
        header = json.loads(weights[8 : 8 + length])
        return dict(json.loads(header["__metadata__"]["llmos"]))
    except (struct.error, ValueError, KeyError, TypeError):
        raise ModelError("not an llmos output model (no llmos metadata in the safetensors header)") from None


def load_finetuned(recipe: Recipe, weights: bytes) -> tuple[torch.nn.Module, Any, list[str] | None]:
    from safetensors.torch import load

    meta = output_metadata(weights)
    if meta.get("recipe_hash") != recipe.hash().hex():
        raise RecipeError("this output was trained with another recipe (its recipe hash differs)")
    labels = meta.get("labels")
    loaded = models.load(recipe, len(labels) if labels else None)
    model = train.apply_method(loaded, recipe)
    tensors = load(weights)
    if recipe.method is Method.LORA:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, tensors)
    else:
        for name, source in meta.get("tied", {}).items():
            tensors[name] = tensors[source]
        model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, loaded.tokenizer, labels


@torch.no_grad()
def classify(recipe: Recipe, weights: bytes, texts: list[str]) -> list[dict[str, Any]]:
    if recipe.task is not Task.SEQUENCE_CLASSIFICATION:
        raise RecipeError(f"predict supports sequence classification; this output is {recipe.task.value}")
    model, tokenizer, labels = load_finetuned(recipe, weights)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=recipe.hyper.max_length, return_tensors="pt")
    probs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.softmax(-1)
    answers = []
    for text, row in zip(texts, probs, strict=True):
        index = int(row.argmax())
        answers.append({"text": text, "label": labels[index] if labels else index, "score": round(float(row[index]), 4)})
    return answers


#: What the client audit feeds a fine-tuned output: ordinary text, for every task.
PROBE_TEXTS = ["where is my order", "please refund me", "the page will not load", "hello"]


def check_output(recipe: Recipe, weights: bytes) -> dict[str, Any]:
    """Load the output on the recipe's base model and run it: the trainable weights' hash (as the trajectory records
    it) and whether every probe gave finite outputs of the right shape."""
    model, tokenizer, labels = load_finetuned(recipe, weights)
    return check_loaded(recipe, model, tokenizer, labels)


@torch.no_grad()
def check_loaded(recipe: Recipe, model: torch.nn.Module, tokenizer: Any, labels: list[str] | None) -> dict[str, Any]:
    """`check_output` on a model already loaded (what `llmos serve` checks before it serves it)."""
    batch = tokenizer(PROBE_TEXTS, padding=True, truncation=True, max_length=recipe.hyper.max_length, return_tensors="pt")
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    finite = bool(torch.isfinite(logits).all())
    expected_classes = len(labels) if labels else None
    shape_ok = logits.shape[0] == len(PROBE_TEXTS) and (expected_classes is None or logits.shape[-1] == expected_classes)
    return {"trainable_hash": train.trainable_hash(model), "probes": len(PROBE_TEXTS), "finite": finite, "shape_ok": bool(shape_ok),
            "task": recipe.task.value}
