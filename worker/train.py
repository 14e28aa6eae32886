"""Fine-tuning: encode, evaluate, train (full or LoRA) with a Merkle-rooted trajectory, and export.

Deterministic on CPU (the default): seeded initialisation and batch order, deterministic kernels, so
the same inputs give bit-identical weights, output hash and trajectory root. On CUDA the same code runs
in bf16 autocast where the device supports it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import blake3
import torch

from llmos_chain.crypto import merkle
from llmos_chain.errors import CheckpointError, RecipeError
from worker.data import Dataset
from worker.models import Loaded
from llmos_chain.recipe import Method, Recipe, Task

IGNORE = -100


@dataclass
class Batchable:
    """Padded tensors for one split."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    tokens: int  # non-padding tokens, for throughput figures


@dataclass
class TrajectoryRecord:
    step: int
    loss: float
    lr: float
    weights_hash: str
    checkpoint: str = ""  # BLAKE3 of the sealed checkpoint kept at this record ("" when none was kept)

    def encode(self) -> bytes:
        return json.dumps({"step": self.step, "loss": self.loss, "lr": self.lr, "weights_hash": self.weights_hash,
                           "checkpoint": self.checkpoint}, sort_keys=True, separators=(",", ":")).encode()


class CheckpointSink(Protocol):
    """Where the trainer's checkpoints go (the runner seals each one to the verifier's key as it is made)."""

    def wanted(self, record: int) -> bool:
        """Whether to keep a checkpoint at the `record`-th trajectory record (counting from 1)."""

    def put(self, record: int, blob: bytes) -> str:
        """Keep `blob` (a plaintext checkpoint); returns the commitment the trajectory record carries."""


@dataclass
class TrainResult:
    metric_name: str
    metric_before: float
    metric_after: float
    higher_is_better: bool
    trajectory: list[TrajectoryRecord]
    trajectory_root: bytes
    losses: list[float]
    steps: int
    train_tokens: int
    train_seconds: float
    device: str
    output: bytes = b""
    step_tokens: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    @property
    def improved(self) -> bool:
        return self.metric_after > self.metric_before if self.higher_is_better else self.metric_after < self.metric_before


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# ------------------------------------------------------------------------------------------ encoding


def _byte_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode(data: Dataset, loaded: Loaded, max_length: int) -> Batchable:
    tok = loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows: list[list[int]] = []
    labels: list[Any] = []
    if data.task is Task.TOKEN_CLASSIFICATION:
        assert data.tokens is not None and data.tags is not None
        cls_id = getattr(tok, "cls_token_id", None)
        sep_id = getattr(tok, "sep_token_id", None)
        for words, tags in zip(data.tokens, data.tags, strict=True):
            ids: list[int] = [cls_id] if cls_id is not None else []
            lab: list[int] = [IGNORE] if cls_id is not None else []
            for i, (word, tag) in enumerate(zip(words, tags, strict=True)):
                piece = _byte_ids(tok, word if i == 0 or cls_id is not None else " " + word)
                ids += piece
                lab += [tag] + [IGNORE] * (len(piece) - 1)
            ids, lab = ids[: max_length - 1], lab[: max_length - 1]
            if sep_id is not None:
                ids.append(sep_id)
                lab.append(IGNORE)
            rows.append(ids)
            labels.append(lab)
    else:
        for text in data.texts:
            ids = list(tok(text, truncation=True, max_length=max_length)["input_ids"])
            rows.append(ids)
            labels.append(ids if data.task is Task.CAUSAL_LM else None)
        if data.task is Task.SEQUENCE_CLASSIFICATION:
            assert data.labels is not None
            labels = list(data.labels)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    if data.task is Task.SEQUENCE_CLASSIFICATION:
        label_t = torch.tensor(labels, dtype=torch.long)
    else:
        label_t = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, lab in enumerate(labels):
            label_t[i, : len(lab)] = torch.tensor(lab)
    return Batchable(input_ids, mask, label_t, int(mask.sum()))


# ------------------------------------------------------------------------------------------ LoRA


def apply_method(loaded: Loaded, recipe: Recipe) -> torch.nn.Module:
    if recipe.method is Method.FULL:
        return loaded.model
    from peft import LoraConfig, TaskType, get_peft_model

    task_type = {Task.SEQUENCE_CLASSIFICATION: TaskType.SEQ_CLS, Task.TOKEN_CLASSIFICATION: TaskType.TOKEN_CLS,
                 Task.CAUSAL_LM: TaskType.CAUSAL_LM}[recipe.task]
    targets = ["query", "value"] if loaded.arch == "bert" else ["c_attn", "c_proj", "c_fc"]
    config = LoraConfig(task_type=task_type, r=recipe.hyper.lora_r, lora_alpha=recipe.hyper.lora_alpha,
                        lora_dropout=recipe.hyper.lora_dropout, target_modules=targets,
                        fan_in_fan_out=loaded.arch == "gpt2")  # GPT-2's Conv1D stores weights transposed
    return get_peft_model(loaded.model, config)


def trainable_hash(model: torch.nn.Module) -> str:
    """BLAKE3 over the trainable parameters (name, then float32 bytes), in name order; no extra copies on CPU."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            h.update(name.encode() + b"\0")
            h.update(memoryview(p.detach().to("cpu", torch.float32).contiguous().numpy()).cast("B"))
    return h.hexdigest()


def export(model: torch.nn.Module, recipe: Recipe, labels: list[str] | None = None) -> bytes:
    """The fine-tuned weights as safetensors bytes: the adapter for LoRA, everything for full fine-tuning."""
    from safetensors.torch import save

    if recipe.method is Method.LORA:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    else:
        state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[int, str] = {}
    for name, tensor in sorted(state.items()):
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:  # tied weights (e.g. GPT-2's lm_head and embeddings) are stored once
            tied[name] = seen[ptr]
            continue
        seen[ptr] = name
        tensors[name] = tensor.detach().to("cpu").contiguous()
    # One metadata key holding canonical JSON: safetensors writes several keys in a random order, which
    # would make the output hash differ between identical runs.
    meta: dict[str, object] = {"format": "llmos-output/1", "recipe_hash": recipe.hash().hex(), "tied": tied}
    if labels is not None:
        meta["labels"] = labels  # label names by class index: what a user of the model needs to read its answers
    return save(tensors, metadata={"llmos": json.dumps(meta, sort_keys=True, separators=(",", ":"))})


# ------------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Batchable, task: Task, batch_size: int, dev: torch.device) -> float:
    """Accuracy (sequence), token accuracy (tokens) or perplexity (causal LM) on `split`."""
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for start in range(0, split.input_ids.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        ids, mask, labels = split.input_ids[sl].to(dev), split.attention_mask[sl].to(dev), split.labels[sl].to(dev)
        out = model(input_ids=ids, attention_mask=mask, labels=labels if task is Task.CAUSAL_LM else None)
        if task is Task.CAUSAL_LM:
            n = int((labels[:, 1:] != IGNORE).sum())
            loss_sum += float(out.loss) * n
            total += n
            continue
        pred = out.logits.argmax(-1)
        if task is Task.SEQUENCE_CLASSIFICATION:
            correct += int((pred == labels).sum())
            total += labels.numel()
        else:
            keep = labels != IGNORE
            correct += int((pred[keep] == labels[keep]).sum())
            total += int(keep.sum())
    model.train()
    if task is Task.CAUSAL_LM:
        return math.exp(loss_sum / max(total, 1))
    return correct / max(total, 1)


# ------------------------------------------------------------------------------------------ training


@dataclass
class Parallel:
    """This process's place in a data-parallel run (`worker/distributed.py` sets it up): each step's global batch is
    cut into `world` shards, rank `rank` trains on shard `rank`, and the wrapped model (torch DDP) averages the
    gradients across ranks. Only rank 0 evaluates, hashes the trajectory and exports the weights."""

    rank: int
    world: int
    wrap: Callable[[torch.nn.Module], torch.nn.Module]
    mean: Callable[[float], float]  # the mean of a value over all ranks (a collective: every rank calls it)
    on_first_step: Callable[[], None] | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def set_deterministic(seed: int, enabled: bool) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(enabled)


CHECKPOINT_FORMAT = "llmos-checkpoint/1"


class Trainer:
    """The training loop's whole state, one step at a time, with checkpoints that resume it bit-identically.

    A checkpoint holds the trainable weights (the adapter and head for LoRA, everything for full fine-tuning), the
    optimizer's moments and step counts, the schedule's position, both RNG states (dropout and the data order), the
    current epoch's order and the position in it. Replaying from one with the same base model and data reaches the
    same weights hash at every later record, on CPU bit for bit (`llmos verify` relies on it).
    """

    def __init__(self, loaded: Loaded, recipe: Recipe, train_split: Batchable) -> None:
        hyper = recipe.hyper
        self.parallel: Parallel | None = None
        self.recipe, self.split = recipe, train_split
        self.dev = device()
        set_deterministic(hyper.seed, hyper.deterministic if hyper.deterministic is not None else self.dev.type == "cpu")
        self.model = apply_method(loaded, recipe).to(self.dev)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise RecipeError("the recipe leaves no trainable parameters")
        self.named = sorted((name, p) for name, p in self.model.named_parameters() if p.requires_grad)
        self.optimizer = torch.optim.AdamW(self.params, lr=hyper.learning_rate, weight_decay=hyper.weight_decay)
        self.n = train_split.input_ids.shape[0]
        total = self.total = hyper.total_steps(self.n)
        warm = hyper.warmup_steps
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / max(1, warm)) * max(0.0, 1 - s / total) if warm else max(0.0, 1 - s / total)
        )
        self.gen = torch.Generator().manual_seed(hyper.seed)
        self.order = torch.randperm(self.n, generator=self.gen)
        self.cursor = 0
        self.step = 0
        self.use_bf16 = self.dev.type == "cuda" and torch.cuda.is_bf16_supported()
        self.forward: torch.nn.Module = self.model  # what the steps run through (its DDP wrapper once distributed)

    def distribute(self, parallel: Parallel) -> None:
        """Make this one rank of a data-parallel run: its shard of each global batch, gradients averaged by DDP."""
        if self.recipe.hyper.batch_size < parallel.world:
            raise RecipeError(f"a batch of {self.recipe.hyper.batch_size} cannot be split over {parallel.world} ranks")
        self.parallel = parallel
        self.forward = parallel.wrap(self.model)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next batch's tensors, on the device, in the seeded order (a new order each epoch)."""
        bs = self.recipe.hyper.batch_size
        if self.cursor + bs > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.cursor : self.cursor + bs]
        self.cursor += bs
        if self.parallel is not None:
            idx = idx[self.parallel.rank :: self.parallel.world]  # this rank's shard of the global batch
        split = self.split
        ids, mask, labels = split.input_ids[idx], split.attention_mask[idx], split.labels[idx]
        width = int(mask.sum(1).max())
        ids, mask = ids[:, :width].contiguous().to(self.dev), mask[:, :width].contiguous().to(self.dev)
        labels = (labels if self.recipe.task is Task.SEQUENCE_CLASSIFICATION else labels[:, :width].contiguous()).to(self.dev)
        return ids, mask, labels

    def train_step(self) -> tuple[float, int]:
        """One optimizer step; returns its loss and how many (non-padding) tokens it saw."""
        ids, mask, labels = self.batch()
        with torch.autocast(device_type=self.dev.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            loss = self.forward(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        value = float(loss.detach())
        return (value if self.parallel is None else self.parallel.mean(value)), int(mask.sum())

    def lr(self) -> float:
        return float(self.schedule.get_last_lr()[0])

    def weights_hash(self) -> str:
        return trainable_hash(self.model)

    # ---------------------------------------------------------------- checkpoints
    def checkpoint(self) -> bytes:
        """The state after `self.step` steps as safetensors bytes (one canonical-JSON metadata key: deterministic)."""
        from safetensors.torch import save

        index = {id(p): i for i, p in enumerate(self.params)}
        tensors: dict[str, torch.Tensor] = {}
        for name, p in self.named:
            tensors[f"param/{name}"] = p.detach().to("cpu", torch.float32).contiguous().clone()
        state = self.optimizer.state_dict()
        for i, per in state["state"].items():
            for key, value in per.items():
                tensors[f"opt/{i}/{key}"] = value.detach().to("cpu").contiguous().clone().reshape(-1)
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/order"] = self.gen.get_state()
        tensors["order"] = self.order.clone()
        if self.dev.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state()
        schedule = {k: v for k, v in self.schedule.state_dict().items() if k != "lr_lambdas"}
        meta = {"format": CHECKPOINT_FORMAT, "recipe_hash": self.recipe.hash().hex(), "step": self.step, "cursor": self.cursor,
                "param_groups": state["param_groups"], "schedule": schedule, "params": [n for n, _ in self.named],
                "index": {n: index[id(p)] for n, p in self.named}}
        return save(tensors, metadata={"llmos": json.dumps(meta, sort_keys=True, separators=(",", ":"))})

    def restore(self, blob: bytes) -> None:
        """Resume from `checkpoint()`'s bytes; raises CheckpointError for bytes that are not a checkpoint of this job."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            tensors = load(bytes(blob))
            header_len = int.from_bytes(bytes(blob[:8]), "little")
            meta = json.loads(json.loads(bytes(blob[8 : 8 + header_len]))["__metadata__"]["llmos"])
        except (SafetensorError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"not a readable checkpoint: {exc}") from None
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("recipe_hash") != self.recipe.hash().hex():
            raise CheckpointError("the checkpoint is not one of this recipe's")
        if meta.get("params") != [n for n, _ in self.named]:
            raise CheckpointError("the checkpoint's trainable parameters are not this model's")
        try:
            with torch.no_grad():
                for name, p in self.named:
                    value = tensors[f"param/{name}"]
                    if value.shape != p.shape:
                        raise CheckpointError(f"checkpoint tensor {name} has shape {tuple(value.shape)}, not {tuple(p.shape)}")
                    p.copy_(value.to(p.device, p.dtype))
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith("opt/"):
                    _, i, field_name = key.split("/", 2)
                    ref = self.params[int(i)]
                    shaped = value if field_name == "step" else value.reshape(ref.shape)
                    state.setdefault(int(i), {})[field_name] = shaped.reshape(()) if field_name == "step" else shaped
            self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
            self.schedule.load_state_dict({**meta["schedule"], "lr_lambdas": [None] * len(self.optimizer.param_groups)})
            torch.set_rng_state(tensors["rng/torch"])
            self.gen.set_state(tensors["rng/order"])
            if "rng/cuda" in tensors and self.dev.type == "cuda":
                torch.cuda.set_rng_state(tensors["rng/cuda"])
            self.order = tensors["order"].clone()
            self.cursor, self.step = int(meta["cursor"]), int(meta["step"])
        except CheckpointError:
            raise
        except (KeyError, ValueError, RuntimeError, IndexError, TypeError) as exc:
            raise CheckpointError(f"the checkpoint does not fit this job: {type(exc).__name__}: {exc}") from None


def train(
    loaded: Loaded, recipe: Recipe, train_split: Batchable, eval_split: Batchable,
    on_step: Callable[[int, float], None] | None = None, label_names: list[str] | None = None,
    checkpoints: CheckpointSink | None = None, parallel: Parallel | None = None,
) -> TrainResult:
    """Evaluate, train `recipe.hyper.steps` steps, evaluate again; record the trajectory; export the weights.

    With `checkpoints`, the state at each record it wants is checkpointed and the record carries its commitment.
    With `parallel`, one rank of a data-parallel run: the same global batches, this rank's shard of each; the losses
    are the ranks' mean, the tokens this rank's; evaluation, trajectory and output are rank 0's (empty elsewhere)."""
    hyper = recipe.hyper
    trainer = Trainer(loaded, recipe, train_split)
    if parallel is not None:
        trainer.distribute(parallel)
    main = parallel is None or parallel.main
    model, dev, task = trainer.model, trainer.dev, recipe.task
    metric_name, higher = {Task.SEQUENCE_CLASSIFICATION: ("accuracy", True), Task.TOKEN_CLASSIFICATION: ("token_accuracy", True),
                           Task.CAUSAL_LM: ("perplexity", False)}[task]
    before = evaluate(model, eval_split, task, hyper.batch_size, dev) if main else float("nan")
    losses: list[float] = []
    trajectory: list[TrajectoryRecord] = []
    tokens = 0
    step_tokens: list[int] = []
    step_seconds: list[float] = []
    model.train()
    total = trainer.total
    t0 = time.perf_counter()
    for step in range(1, total + 1):
        t_step = time.perf_counter()
        if step == 1 and parallel is not None and parallel.on_first_step is not None:
            parallel.on_first_step()
        value, seen = trainer.train_step()
        step_tokens.append(seen)
        tokens += seen
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
        if main and (step % hyper.trajectory_every == 0 or step == total):
            record = TrajectoryRecord(step, value, trainer.lr(), trainer.weights_hash())
            if checkpoints is not None and checkpoints.wanted(len(trajectory) + 1):
                record.checkpoint = checkpoints.put(len(trajectory) + 1, trainer.checkpoint())
            trajectory.append(record)
        step_seconds.append(time.perf_counter() - t_step)
    seconds = time.perf_counter() - t0
    after = evaluate(model, eval_split, task, hyper.batch_size, dev) if main else float("nan")
    return TrainResult(
        metric_name=metric_name, metric_before=before, metric_after=after, higher_is_better=higher,
        trajectory=trajectory, trajectory_root=merkle.root_of(r.encode() for r in trajectory) if main else b"", losses=losses,
        steps=total, train_tokens=tokens, train_seconds=seconds, device=dev.type,
        output=export(model, recipe, label_names) if main else b"",
        step_tokens=step_tokens, step_seconds=step_seconds,
    )
