"""The coordinator reads a job's recipe for its runtime estimate from file:// or http(s)://, checked against its hash."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.recipe import Recipe
from llmos_chain.store import Store
from tests.helpers import World

RECIPE = Recipe.parse('{"task": "sequence-classification", "method": "lora", "base_model": {"kind": "pretrained", "name": "minilm-l6"},'
                      ' "hyper": {"steps": 600, "batch_size": 32, "max_length": 128}}')


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_recipes_over_http_and_file_feed_the_estimate(world: World, tmp_path: Path) -> None:
    (tmp_path / "recipe.json").write_bytes(RECIPE.canonical_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        command = WorkerCommand("embedded", tmp_path / "d.json", tmp_path, "none", tmp_path / "r", tmp_path / "w")
        coordinator = Coordinator(world.suite, Store(tmp_path / "c.db"), world.operator, [WorkerConfig(world.worker, 8, 80, 1)],
                                  Executor(command, tmp_path / "logs"))
        good = "0x" + RECIPE.hash().hex()
        url = f"http://127.0.0.1:{server.server_address[1]}/recipe.json"
        over_http = coordinator._recipe(url, good)
        assert over_http is not None and over_http["hyper"]["steps"] == 600
        assert coordinator._recipe((tmp_path / "recipe.json").as_uri(), good) == over_http
        # a recipe that does not hash to the job's recipe hash, or is not there, is not used
        assert coordinator._recipe(url, "0x" + "00" * 32) is None
        assert coordinator._recipe(url.replace("recipe.json", "missing.json"), good) is None
        default = coordinator.estimator.work(None)
        assert coordinator.estimator.work(over_http) != default
    finally:
        server.shutdown()
        server.server_close()


def test_a_job_whose_recipe_cannot_be_read_is_skipped_and_the_daemon_goes_on(world: World, tmp_path: Path) -> None:
    """v1: a job with recipe file:///dev/zero killed every coordinator that estimated it, again after each restart."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "recipe.json").write_bytes(RECIPE.canonical_bytes())
    (tmp_path / "private.json").write_bytes(RECIPE.canonical_bytes())
    command = WorkerCommand("embedded", tmp_path / "d.json", tmp_path, "none", tmp_path / "r", tmp_path / "w", file_roots=(served,))
    coordinator = Coordinator(world.suite, Store(tmp_path / "c.db"), world.operator, [WorkerConfig(world.worker, 8, 80, 1)],
                              Executor(command, tmp_path / "logs"))
    good_hash = RECIPE.hash()
    bad = [world.post(recipe_uri="file:///dev/zero", recipe_hash=good_hash),
           world.post(recipe_uri=(tmp_path / "private.json").as_uri(), recipe_hash=good_hash),  # outside the roots
           world.post(recipe_uri=(served / "recipe.json").as_uri(), recipe_hash=b"\x07" * 32)]  # wrong hash
    good = world.post(recipe_uri=(served / "recipe.json").as_uri(), recipe_hash=good_hash)
    for _ in range(3):
        coordinator.step()
    assert world.job(good).state.name == "ASSIGNED"
    assert [world.job(j).state.name for j in bad] == ["OPEN"] * 3
    assert {coordinator._recipe_verdict(world.job(j).recipe_uri, "0x" + world.job(j).recipe_hash.hex())[1] for j in bad} == {"bad"}

