"""Recipes validate and hash canonically; data parsing names the row at fault."""

from __future__ import annotations

import json

import pytest

from llmos_chain.errors import DataError, ModelError, RecipeError
from worker import data, models
from llmos_chain.recipe import Recipe, Task

BASE = {"task": "sequence-classification", "method": "lora", "base_model": {"kind": "config", "name": "tiny-bert"}}


def test_hash_is_canonical_over_defaults_and_key_order() -> None:
    a = Recipe.parse(json.dumps(BASE))
    b = Recipe.parse(json.dumps({**BASE, "hyper": {"seed": 0}, "version": 1}))
    assert a.hash() == b.hash() and len(a.hash()) == 32
    assert Recipe.parse(json.dumps({**BASE, "hyper": {"seed": 1}})).hash() != a.hash()


@pytest.mark.parametrize(("patch", "message"), [
    ({"task": "summarize"}, "task"),
    ({"method": "qlora"}, "method"),
    ({"base_model": {"kind": "local"}}, "needs `path`"),
    ({"hyper": {"steps": 0}}, "hyper.steps"),
    ({"surprise": 1}, "surprise"),
    ({"version": 2}, "version"),
])
def test_malformed_recipes_are_named(patch: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        Recipe.parse(json.dumps({**BASE, **patch}))
    with pytest.raises(RecipeError, match="invalid recipe"):
        Recipe.parse(b"{not json")


def test_data_errors_name_the_row() -> None:
    recipe = Recipe.parse(json.dumps(BASE))
    good = [{"text": f"t{i}", "label": "a" if i % 2 else "b"} for i in range(6)]
    rows = good + [{"text": "no label"}]
    with pytest.raises(DataError, match="row 7 has no 'label' field"):
        data.parse("\n".join(json.dumps(r) for r in rows).encode(), recipe)
    with pytest.raises(DataError, match="line 2 is not JSON"):
        data.parse(b'{"text": "a", "label": "x"}\n{oops\n', recipe)
    with pytest.raises(DataError, match="at least two labels"):
        data.parse("\n".join(json.dumps({"text": "x", "label": "same"}) for _ in range(6)).encode(), recipe)
    with pytest.raises(DataError, match="not UTF-8"):
        data.parse(b"\xff\xfe" * 10, recipe)


def test_csv_and_token_rows() -> None:
    csv_recipe = Recipe.parse(json.dumps({**BASE, "data": {"format": "csv"}}))
    parsed = data.parse(b"text,label\nhello,a\nbye,b\nhi,a\nciao,b\n", csv_recipe)
    assert parsed.labels == [0, 1, 0, 1] and parsed.label_names == ["a", "b"]
    ner = Recipe.parse(json.dumps({**BASE, "task": "token-classification"}))
    rows = [{"tokens": "bob lives here", "tags": "PER O O"}] * 4
    ds = data.parse("\n".join(json.dumps(r) for r in rows).encode(), ner)
    assert ds.task is Task.TOKEN_CLASSIFICATION and ds.tokens[0] == ["bob", "lives", "here"]
    with pytest.raises(DataError, match="3 tokens but 2 tags"):
        data.parse(json.dumps({"tokens": "a b c", "tags": "O O"}).encode() * 1 + b"\n" + b"\n".join([json.dumps(rows[0]).encode()] * 4), ner)


def test_base_model_hash_checks() -> None:
    recipe = Recipe.parse(json.dumps(BASE))
    expected = models.base_model_hash(recipe.base_model, 0)
    models.load(recipe, 2, expected_hash=expected)
    with pytest.raises(ModelError, match="base model hash mismatch"):
        models.load(recipe, 2, expected_hash=b"\x00" * 32)
    with pytest.raises(RecipeError, match="unknown model config"):
        models.load(Recipe.parse(json.dumps({**BASE, "base_model": {"kind": "config", "name": "huge"}})), 2)
    with pytest.raises(ModelError, match="not found"):
        models.load(Recipe.parse(json.dumps({**BASE, "base_model": {"kind": "local", "path": "/nonexistent"}})), 2)


def test_epochs_set_the_step_count() -> None:
    recipe = Recipe.parse(json.dumps({**BASE, "hyper": {"epochs": 2, "batch_size": 10}}))
    assert recipe.hyper.total_steps(95) == 19
    assert Recipe.parse(json.dumps(BASE)).hyper.total_steps(95) == 100
