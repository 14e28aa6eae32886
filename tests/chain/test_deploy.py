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
    market = world.suite.market.functions
    assert market.workers().call() == loaded.address("WorkerRegistry")
    assert market.datasets().call() == loaded.address("DatasetRegistry")
    assert market.arbiter().call() == loaded.arbiter == world.arbiter.address
    assert market.owner().call() == loaded.deployer
    params = loaded.params
    assert (market.collateralPerGpu().call(), market.grantTimeout().call(), market.disputeWindow().call(), market.disputeBond().call()) == (
        params.collateral_per_gpu_wei, params.grant_timeout_s, params.dispute_window_s, params.dispute_bond_wei)
    assert world.suite.workers.functions.unbondingDelay().call() == params.unbonding_delay_s


def test_deploy_predicts_the_market_address_for_the_registry(world: World) -> None:
    from llmos_chain.chain.contracts import Sender
    from llmos_chain.chain.deploy import DeployParams, deploy_suite

    deployment = deploy_suite(Sender(world.w3, world.stranger), DeployParams(arbiter=world.arbiter.address, dispute_bond_wei=7))
    suite = Suite(world.w3, deployment)
    suite.verify()
    assert suite.workers.functions.market().call() == deployment.address("JobMarket") == suite.market.address
    assert set(deployment.contracts) == {"WorkerRegistry", "DatasetRegistry", "JobMarket"}  # no test token unless asked
    assert suite.market.functions.disputeBond().call() == 7
    assert deployment.params.allow_zero_collateral is False


def test_deploy_params_validate() -> None:
    from pydantic import ValidationError

    from llmos_chain.chain.deploy import DeployParams

    defaults = DeployParams()
    assert defaults.collateral_per_gpu_wei > 0 and defaults.dispute_bond_wei > 0 and not defaults.allow_zero_collateral
    for bad in ({"collateral_per_gpu_wei": -1}, {"grant_timeout_s": 2**40}, {"dispute_window_s": -1}, {"dispute_bond_wei": -1}):
        with pytest.raises(ValidationError):
            DeployParams(**bad)


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
    bad.write_text(json.dumps({"format": "llmos-deployment/1"}))  # a v1 file: the v2 contracts are not compatible
    with pytest.raises(ConfigError, match="not a llmos deployment"):
        Deployment.load(bad)
    bad.write_text(json.dumps({"format": "llmos-deployment/2", "chain_id": "x"}))
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
