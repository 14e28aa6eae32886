"""Deployment files: save, load, validate, and verify against the chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmos_chain.chain.connect import connect
from llmos_chain.chain.deploy import Deployment, Suite
from llmos_chain.errors import ConfigError, DeploymentError
from tests.helpers import World


def test_round_trip(world: World, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "deployment.json"
    world.suite.deployment.save(path)
    loaded = Deployment.load(path)
    assert loaded == world.suite.deployment
    assert loaded.chain_id == world.conn.chain_id
    assert set(loaded.abis) == {"WorkerRegistry", "DatasetRegistry", "JobMarket", "TestToken"}
    Suite(world.w3, loaded).verify()
    assert world.suite.workers.functions.market().call() == loaded.address("JobMarket")
    assert world.suite.datasets.functions.grantListener().call() == loaded.address("JobMarket")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Deployment.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        Deployment.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a llmos deployment"):
        Deployment.load(bad)
    bad.write_text(json.dumps({"format": "llmos-deployment/1", "chain_id": "x"}))
    with pytest.raises(ConfigError, match="malformed"):
        Deployment.load(bad)


def test_verify_rejects_another_chain(world: World) -> None:
    other = connect()  # a second, empty embedded chain has no code at these addresses
    with pytest.raises(DeploymentError, match="no contract"):
        Suite(other.w3, world.suite.deployment).verify()
    wrong_chain = world.suite.deployment.model_copy(update={"chain_id": 1})
    with pytest.raises(DeploymentError, match="for chain 1"):
        Suite(world.w3, wrong_chain).verify()
    with pytest.raises(DeploymentError, match="has no Nope"):
        world.suite.deployment.address("Nope")


def test_verify_rejects_other_code(world: World) -> None:
    records = dict(world.suite.deployment.contracts)
    records["JobMarket"] = records["JobMarket"].model_copy(update={"address": records["WorkerRegistry"].address})
    swapped = world.suite.deployment.model_copy(update={"contracts": records})
    with pytest.raises(DeploymentError, match="is not the deployed JobMarket"):
        Suite(world.w3, swapped).verify()
