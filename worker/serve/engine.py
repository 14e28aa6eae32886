"""A fine-tuned output loaded for inference: one padded forward pass per batch, per task."""

from __future__ import annotations

import math

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llmos_chain.recipe import Recipe, Task
from worker.predict import load_finetuned

#: Words for the tag endpoint: what the trainer saw as `tokens` (whitespace-separated), with their character spans.
_WORD = re.compile(r"\S+")


class InputTooLong(ValueError):
    """The text needs more positions than the model has."""


@dataclass
class Engine:
    """The model, its tokenizer and label names, and a count of forward passes (what the batching saves).

    Forward passes may run from several threads at once (inference only reads the weights)."""

    recipe: Recipe
    model: torch.nn.Module
    tokenizer: Any
    labels: list[str] | None
    max_positions: int
    forward_passes: int = 0
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, recipe: Recipe, weights: bytes) -> Engine:
        model, tokenizer, labels = load_finetuned(recipe, weights)
        config = model.config
        positions = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512))
        return cls(recipe, model, tokenizer, labels, positions)

    @property
    def task(self) -> Task:
        return self.recipe.task

    def _label(self, index: int) -> str:
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)

    def _check_length(self, n: int) -> None:
        if n > self.max_positions:
            raise InputTooLong(f"the text is {n} tokens long; this model takes at most {self.max_positions}")

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        ids, mask = self._pad(rows)
        self._count()
        with torch.inference_mode():
            return self.model(input_ids=ids, attention_mask=mask).logits.float()

    def _count(self) -> None:
        with self._count_lock:
            self.forward_passes += 1

    # ---------------------------------------------------------------- sequence classification

    def classify_ids(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text)["input_ids"])
        self._check_length(len(ids))
        return ids

    def classify(self, batch: list[tuple[list[int], int]]) -> list[list[dict[str, Any]]]:
        """For each (token ids, top k): the k best labels with their probabilities, best first."""
        probs = self._forward([ids for ids, _ in batch]).softmax(-1)
        answers = []
        for (_, k), row in zip(batch, probs, strict=True):
            scores, index = row.topk(min(k, row.shape[-1]))
            answers.append([{"label": self._label(int(i)), "score": round(float(s), 6)} for s, i in zip(scores, index, strict=True)])
        return answers

    # ---------------------------------------------------------------- token classification

    def tag_ids(self, text: str) -> tuple[list[int], list[tuple[int, int, int]]]:
        """Token ids as the trainer encodes a row of words (each word's first piece carries its tag), and each word's
        (start, end, index of its first piece)."""
        tok = self.tokenizer
        cls_id, sep_id = getattr(tok, "cls_token_id", None), getattr(tok, "sep_token_id", None)
        ids: list[int] = [cls_id] if cls_id is not None else []
        words = []
        for i, match in enumerate(_WORD.finditer(text)):
            word = match.group()
            piece = list(tok(word if i == 0 or cls_id is not None else " " + word, add_special_tokens=False)["input_ids"])
            words.append((match.start(), match.end(), len(ids)))
            ids += piece
        if sep_id is not None:
            ids.append(sep_id)
        self._check_length(len(ids))
        return ids, words

    def tag(self, batch: list[tuple[str, list[int], list[tuple[int, int, int]]]]) -> list[list[dict[str, Any]]]:
        """Entities: runs of words with the same tag other than `O` (a `B-`/`I-` prefix is read as IOB), with spans."""
        probs = self._forward([ids for _, ids, _ in batch]).softmax(-1)
        answers = []
        for (text, _, words), row in zip(batch, probs, strict=True):
            entities: list[dict[str, Any]] = []
            for w, (start, end, first) in enumerate(words):
                score, index = row[first].max(-1)
                label = self._label(int(index))
                kind = label[2:] if label[:2] in ("B-", "I-") else label
                if kind == "O":
                    continue
                last = entities[-1] if entities else None
                if last is not None and last["label"] == kind and last["_word"] == w - 1 and not label.startswith("B-"):
                    last.update(end=end, _word=w, _scores=[*last["_scores"], float(score)])
                else:
                    entities.append({"label": kind, "start": start, "end": end, "_word": w, "_scores": [float(score)]})
            answers.append([{"label": e["label"], "text": text[e["start"] : e["end"]], "start": e["start"], "end": e["end"],
                             "score": round(sum(e["_scores"]) / len(e["_scores"]), 6)} for e in entities])
        return answers

    # ---------------------------------------------------------------- causal LM

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if not ids:
            raise InputTooLong("the prompt encodes to no tokens")
        self._check_length(len(ids))
        return ids

    def generate(self, batch: list[Generation]) -> list[str]:
        """Generate for every request of the batch at once: prompts left-padded into one tensor, one forward pass per
        new token for all of them, with the KV cache (greedy at temperature 0, else sampled with the request's seed).
        A request stops at the model's end token, its `max_new_tokens` or the model's last position; each new piece of
        text goes to its `emit` as it comes (then None). Returns each request's whole text."""
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        n, width = len(batch), max(len(g.ids) for g in batch)
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, g in enumerate(batch):
            ids[i, width - len(g.ids) :] = torch.tensor(g.ids, dtype=torch.long)
            mask[i, width - len(g.ids) :] = 1
        budgets = [min(g.max_new_tokens, self.max_positions - len(g.ids)) for g in batch]
        generators = [torch.Generator().manual_seed(g.seed) if g.seed is not None else None for g in batch]
        produced: list[list[int]] = [[] for _ in batch]
        sent = [""] * n
        done = [b <= 0 for b in budgets]
        step_input, positions, past = ids, (mask.cumsum(-1) - 1).clamp(min=0), None
        while not all(done):
            self._count()
            with torch.inference_mode():
                out = self.model(input_ids=step_input, attention_mask=mask, position_ids=positions, cache=past, use_cache=True)
            past = out.cache
            logits = out.logits[:, -1].float()
            tokens = []
            for i, g in enumerate(batch):
                token = pad
                if not done[i]:
                    if g.temperature <= 0:
                        token = int(logits[i].argmax())
                    else:
                        # shifted so the largest logit is 0 first: a tiny temperature sends the rest to -inf (a
                        # greedy pick among the best), never to inf - inf = nan
                        row = logits[i].double()
                        scaled = ((row - row.max()) / g.temperature).nan_to_num(nan=-math.inf)
                        token = int(torch.multinomial(scaled.softmax(-1), 1, generator=generators[i]))
                    if eos is not None and token == eos:
                        done[i] = True
                    else:
                        produced[i].append(token)
                        done[i] = len(produced[i]) >= budgets[i]
                    self._emit(g, produced[i], sent, i, final=done[i])
                    if done[i] and g.emit is not None:
                        g.emit(None)
                tokens.append(token)
            step_input = torch.tensor(tokens, dtype=torch.long)[:, None]
            mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long)], dim=1)
            positions = (mask.sum(-1, keepdim=True) - 1)
        for i, g in enumerate(batch):
            if budgets[i] <= 0 and g.emit is not None:
                g.emit(None)
        return sent

    def _emit(self, g: Generation, produced: list[int], sent: list[str], i: int, final: bool) -> None:
        """Hand the request the text it has not seen yet (holding back an incomplete UTF-8 sequence until the end)."""
        text = self.tokenizer.decode(produced, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            if not final:
                return
            text = text.rstrip("\ufffd")
        if len(text) > len(sent[i]):
            piece, sent[i] = text[len(sent[i]) :], text
            if g.emit is not None:
                g.emit(piece)


@dataclass
class Generation:
    """One generate request: its prompt's token ids and settings, and where its pieces go as they come (or None)."""

    ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    emit: Callable[[str | None], None] | None = None
