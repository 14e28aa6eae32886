"""Parse decrypted training data (in memory) into examples for the recipe's task, and split it."""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from typing import Any

from llmos_chain.errors import DataError
from llmos_chain.recipe import Recipe, Task


@dataclass
class Dataset:
    """Examples of one task: texts (+ labels), or token lists (+ tags)."""

    task: Task
    texts: list[str]
    labels: list[int] | None = None
    tokens: list[list[str]] | None = None
    tags: list[list[int]] | None = None
    label_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.tokens) if self.tokens is not None else len(self.texts)

    def subset(self, idx: list[int]) -> Dataset:
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        texts = [self.texts[i] for i in idx] if self.texts else []
        return Dataset(self.task, texts, pick(self.labels), pick(self.tokens), pick(self.tags), self.label_names)


def _rows(raw: bytes, recipe: Recipe) -> list[dict[str, Any]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"the dataset is not UTF-8 text (byte {exc.start})") from None
    if recipe.data.format == "csv":
        try:
            return list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise DataError(f"malformed CSV: {exc}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"line {n} is not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"line {n} is not a JSON object")
        rows.append(row)
    return rows


def _field(row: dict[str, Any], name: str, n: int) -> Any:
    if name not in row or row[name] in (None, ""):
        raise DataError(f"row {n} has no {name!r} field")
    return row[name]


def _words(value: Any, n: int, name: str) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    raise DataError(f"row {n}: {name!r} must be a list or a space-separated string")


def parse(raw: bytes, recipe: Recipe) -> Dataset:
    """Examples from the decrypted bytes; any row the task cannot use is a DataError (the data's fault)."""
    rows = _rows(raw, recipe)
    if len(rows) < 4:
        raise DataError(f"the dataset has {len(rows)} usable rows; at least 4 are needed to train and evaluate")
    spec = recipe.data
    if recipe.task is Task.SEQUENCE_CLASSIFICATION:
        texts = [str(_field(r, spec.text_field, n)) for n, r in enumerate(rows, 1)]
        raw_labels = [str(_field(r, spec.label_field, n)) for n, r in enumerate(rows, 1)]
        names = sorted(set(raw_labels))
        if len(names) < 2:
            raise DataError(f"sequence classification needs at least two labels; the data has {names}")
        index = {name: i for i, name in enumerate(names)}
        return Dataset(recipe.task, texts, [index[x] for x in raw_labels], label_names=names)
    if recipe.task is Task.TOKEN_CLASSIFICATION:
        tokens, tags = [], []
        for n, r in enumerate(rows, 1):
            words = _words(_field(r, spec.tokens_field, n), n, spec.tokens_field)
            labels = _words(_field(r, spec.tags_field, n), n, spec.tags_field)
            if len(words) != len(labels):
                raise DataError(f"row {n} has {len(words)} tokens but {len(labels)} tags")
            tokens.append(words)
            tags.append(labels)
        names = sorted({t for row in tags for t in row})
        index = {name: i for i, name in enumerate(names)}
        return Dataset(recipe.task, [" ".join(w) for w in tokens], tokens=tokens, tags=[[index[t] for t in row] for row in tags], label_names=names)
    texts = [str(_field(r, spec.text_field, n)) for n, r in enumerate(rows, 1)]
    return Dataset(recipe.task, texts)


def split(data: Dataset, eval_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A deterministic shuffle-split; every label of a classification set stays represented in training."""
    idx = list(range(len(data)))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, int(round(len(idx) * eval_fraction)))
    train, held = idx[n_eval:], idx[:n_eval]
    if not train:
        raise DataError("too few rows to hold out an evaluation split")
    return data.subset(train), data.subset(held)
