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
from typing import Any

import blake3
import torch

from llmos_chain.crypto import merkle
from llmos_chain.errors import RecipeError
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

    def encode(self) -> bytes:
        return json.dumps({"step": self.step, "loss": self.loss, "lr": self.lr, "weights_hash": self.weights_hash},
                          sort_keys=True, separators=(",", ":")).encode()


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


def set_deterministic(seed: int, enabled: bool) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(enabled)


def train(
    loaded: Loaded, recipe: Recipe, train_split: Batchable, eval_split: Batchable,
    on_step: Callable[[int, float], None] | None = None, label_names: list[str] | None = None,
) -> TrainResult:
    """Evaluate, train `recipe.hyper.steps` steps, evaluate again; record the trajectory; export the weights."""
    hyper = recipe.hyper
    dev = device()
    set_deterministic(hyper.seed, hyper.deterministic if hyper.deterministic is not None else dev.type == "cpu")
    model = apply_method(loaded, recipe).to(dev)
    task = recipe.task
    metric_name, higher = {Task.SEQUENCE_CLASSIFICATION: ("accuracy", True), Task.TOKEN_CLASSIFICATION: ("token_accuracy", True),
                           Task.CAUSAL_LM: ("perplexity", False)}[task]
    before = evaluate(model, eval_split, task, hyper.batch_size, dev)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RecipeError("the recipe leaves no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=hyper.learning_rate, weight_decay=hyper.weight_decay)
    total = hyper.total_steps(train_split.input_ids.shape[0])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, hyper.warmup_steps)) * max(0.0, 1 - s / total) if hyper.warmup_steps else max(0.0, 1 - s / total)
    )
    gen = torch.Generator().manual_seed(hyper.seed)
    n = train_split.input_ids.shape[0]
    order = torch.randperm(n, generator=gen)
    cursor = 0
    use_bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    losses: list[float] = []
    trajectory: list[TrajectoryRecord] = []
    tokens = 0
    step_tokens: list[int] = []
    step_seconds: list[float] = []
    model.train()
    t0 = time.perf_counter()
    for step in range(1, total + 1):
        t_step = time.perf_counter()
        if cursor + hyper.batch_size > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor : cursor + hyper.batch_size]
        cursor += hyper.batch_size
        ids, mask, labels = train_split.input_ids[idx], train_split.attention_mask[idx], train_split.labels[idx]
        width = int(mask.sum(1).max())
        ids, mask = ids[:, :width].contiguous().to(dev), mask[:, :width].contiguous().to(dev)
        labels = (labels if task is Task.SEQUENCE_CLASSIFICATION else labels[:, :width].contiguous()).to(dev)
        step_tokens.append(int(mask.sum()))
        tokens += step_tokens[-1]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        losses.append(value)
        if on_step is not None:
            on_step(step, value)
        if step % hyper.trajectory_every == 0 or step == total:
            trajectory.append(TrajectoryRecord(step, value, float(schedule.get_last_lr()[0]), trainable_hash(model)))
        step_seconds.append(time.perf_counter() - t_step)
    seconds = time.perf_counter() - t0
    after = evaluate(model, eval_split, task, hyper.batch_size, dev)
    return TrainResult(
        metric_name=metric_name, metric_before=before, metric_after=after, higher_is_better=higher,
        trajectory=trajectory, trajectory_root=merkle.root_of(r.encode() for r in trajectory), losses=losses,
        steps=total, train_tokens=tokens, train_seconds=seconds, device=dev.type, output=export(model, recipe, label_names),
        step_tokens=step_tokens, step_seconds=step_seconds,
    )
