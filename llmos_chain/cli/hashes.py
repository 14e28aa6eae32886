"""`llmos recipe hash` and `llmos model hash`: the two hashes a job is posted with, for those who post without the CLI.

A wallet user calling `JobMarket.postJob` directly (cast, a multisig, a script) needs the request's `recipeHash` and
`baseModelHash`; these commands compute them exactly as `llmos job post` does (`Recipe.hash`, `base_model_hash`)."""

from __future__ import annotations

from pathlib import Path

import typer

from llmos_chain.cli.common import JSON
from llmos_chain.cli.output import emit_json
from llmos_chain.errors import ConfigError

recipe_app = typer.Typer(help="Recipes: the hash a job's `recipeHash` must be.", no_args_is_help=True)
model_app = typer.Typer(help="Base models: the hash a job's `baseModelHash` must be.", no_args_is_help=True)


@recipe_app.command("hash")
def recipe_hash(
    file: Path = typer.Argument(..., help="Recipe file (JSON), e.g. examples/recipe-intents-lora.json."),
    json_out: bool = JSON,
) -> None:
    """Print the recipe's hash (BLAKE3 of its canonical JSON, defaults filled in): the `recipeHash` to post with.

    With --json also the base model and seed it names, the input of `llmos model hash`."""
    from llmos_chain.recipe import Recipe

    if file.is_dir():
        raise ConfigError(f"recipe {file} is a directory: name a recipe file")
    recipe = Recipe.load(file)
    digest = "0x" + recipe.hash().hex()
    if json_out:
        emit_json({"recipe": str(file), "recipe_hash": digest, "base_model": recipe.base_model.model_dump(exclude_none=True),
                   "seed": recipe.hyper.seed})
        return
    print(digest)


@model_app.command("hash")
def model_hash(
    spec: str = typer.Argument(..., help="The recipe's `base_model`, as JSON: '{\"kind\":\"pretrained\",\"name\":\"minilm-l6\"}', "
                                         "'{\"kind\":\"config\",\"name\":\"tiny-bert\"}' or '{\"kind\":\"local\",\"path\":\"DIR\"}'."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1,
                             help="The recipe's `hyper.seed` (default 0): a random-init `config` model's weights depend on it."),
    json_out: bool = JSON,
) -> None:
    """Print the base model's hash: the `baseModelHash` to post with (what `llmos job post` computes from the recipe).

    For a packaged or local model: BLAKE3 over its config and weight files; for a random-init config: over the
    config and the seed."""
    from pydantic import ValidationError

    from llmos_chain.basemodel import base_model_hash
    from llmos_chain.recipe import BaseModelSpec

    try:
        parsed = BaseModelSpec.model_validate_json(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid base model SPEC (JSON like the recipe's base_model): {problems}") from None
    digest = "0x" + base_model_hash(parsed, seed).hex()
    if json_out:
        emit_json({"base_model": parsed.model_dump(exclude_none=True), "seed": seed, "base_model_hash": digest})
        return
    print(digest)
