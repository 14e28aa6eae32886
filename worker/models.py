"""Base models and tokenizers: the packaged pretrained MiniLM, a local directory, or a named random-init config.

Which model a spec names and its hash live in `llmos_chain.basemodel` (clients and auditors need them
without torch); this module loads the model and its tokenizer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmos_chain.basemodel import TINY_CONFIGS, WEIGHT_SUFFIXES, base_model_hash, directory_hash, pretrained_path  # noqa: F401
from llmos_chain.errors import ModelError, RecipeError
from llmos_chain.recipe import Recipe, Task

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: Any
    base_hash: bytes
    arch: str  # "bert" or "gpt2"


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
