"""The versioned fine-tuning recipe: what to train, how, on which base model. Its hash goes on-chain.

Lives in llmos_chain (it needs no torch) so that clients can hash recipes and auditors check them;
the worker runtime imports it from here.
"""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Literal

import blake3
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmos_chain.errors import IntegrityError, RecipeError
from llmos_chain.net import FetchError, FetchPolicy, read_bytes


class Task(str, Enum):
    SEQUENCE_CLASSIFICATION = "sequence-classification"
    TOKEN_CLASSIFICATION = "token-classification"
    CAUSAL_LM = "causal-lm"


class Method(str, Enum):
    FULL = "full"
    LORA = "lora"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelSpec(_Strict):
    """`pretrained` (a packaged model: minilm-l6), `local` (a directory), or `config` (random init: tiny-bert, tiny-gpt2)."""

    kind: Literal["pretrained", "local", "config"]
    name: str | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BaseModelSpec:
        if self.kind == "local" and not self.path:
            raise ValueError("a local base model needs `path`")
        if self.kind in ("pretrained", "config") and not self.name:
            raise ValueError(f"a {self.kind} base model needs `name`")
        return self


class Hyper(_Strict):
    """Training settings. `epochs`, when given, sets the step count from the training split's size."""

    steps: int = Field(default=100, ge=1, le=1_000_000)
    epochs: float | None = Field(default=None, gt=0, le=1000)
    learning_rate: float = Field(default=5e-4, gt=0, lt=1)
    batch_size: int = Field(default=16, ge=1, le=4096)
    max_length: int = Field(default=64, ge=4, le=8192)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = Field(default=0, ge=0, lt=2**32)
    lora_r: int = Field(default=8, ge=1, le=256)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    trajectory_every: int = Field(default=10, ge=1)
    deterministic: bool | None = None  # None: on for CPU, off for CUDA (where it needs cuBLAS settings and costs speed)

    def total_steps(self, train_examples: int) -> int:
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * train_examples / self.batch_size))


class DataSpec(_Strict):
    format: Literal["jsonl", "csv"] = "jsonl"
    text_field: str = "text"
    label_field: str = "label"
    tokens_field: str = "tokens"
    tags_field: str = "tags"


class Recipe(_Strict):
    version: Literal[1] = 1
    task: Task
    method: Method
    base_model: BaseModelSpec
    hyper: Hyper = Hyper()
    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    data: DataSpec = DataSpec()

    def canonical_bytes(self) -> bytes:
        """The bytes the recipe hash is taken over: sorted keys, no whitespace, defaults filled in."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()

    def hash(self) -> bytes:
        return blake3.blake3(self.canonical_bytes()).digest()

    @classmethod
    def parse(cls, raw: bytes | str) -> Recipe:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'recipe'}: {e['msg']}" for e in exc.errors())
            raise RecipeError(f"invalid recipe: {problems}") from None

    @classmethod
    def load(cls, path: Path) -> Recipe:
        try:
            return cls.parse(Path(path).read_bytes())
        except FileNotFoundError:
            raise RecipeError(f"recipe file not found: {path}") from None


#: A recipe is a small JSON document; anything larger is refused unread.
MAX_RECIPE_BYTES = 256 << 10


def fetch_recipe(uri: str, expected_hash: bytes, timeout: float = 30.0, policy: FetchPolicy | None = None) -> Recipe:
    """The recipe a job names (file://, a path, http(s)://); its canonical hash must be the job's recipe hash.

    At most `MAX_RECIPE_BYTES`, within `policy` (a daemon's: only its configured local roots, same-origin redirects).
    A failure worth retrying (a timeout, a refused connection) raises `FetchError` with `transient` set; anything
    that is the job's fault raises `RecipeError` or `IntegrityError`."""
    policy = policy or FetchPolicy(timeout_s=timeout)
    try:
        raw = read_bytes(uri, MAX_RECIPE_BYTES, policy)
    except FetchError as exc:
        if exc.transient:
            raise
        raise RecipeError(f"cannot fetch the recipe: {exc}") from None
    recipe = Recipe.parse(raw)
    if recipe.hash() != expected_hash:
        raise IntegrityError(f"recipe hash mismatch: {uri} hashes to 0x{recipe.hash().hex()}, the job names 0x{expected_hash.hex()}")
    return recipe
