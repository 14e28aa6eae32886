"""Deploy the contract suite to any web3 provider and save/load the deployment file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_utils import keccak
from pydantic import BaseModel, Field, ValidationError
from web3 import Web3
from web3.contract import Contract
from web3.utils.address import get_create_address

from llmos_chain.chain.contracts import Sender, abi, artifact, bind
from llmos_chain.errors import ConfigError, DeploymentError

SUITE = ("WorkerRegistry", "DatasetRegistry", "JobMarket")
DEPLOYMENT_FORMAT = "llmos-deployment/2"


class DeployParams(BaseModel):
    """Constructor parameters of the suite."""

    arbiter: str | None = None
    unbonding_delay_s: int = Field(default=7 * 24 * 3600, ge=0, lt=2**40)
    collateral_per_gpu_wei: int = Field(default=10**16, ge=0)
    grant_timeout_s: int = Field(default=24 * 3600, ge=0, lt=2**40)
    #: Seconds the arbiter has to decide a dispute before its default outcome (the worker's claim stands).
    dispute_window_s: int = Field(default=3 * 24 * 3600, ge=0, lt=2**40)
    #: ETH a client pays to dispute: back if upheld, else to the worker's operator.
    dispute_bond_wei: int = Field(default=10**16, ge=0)
    #: A zero collateral means workers risk nothing; the contract refuses it unless this says it is meant.
    allow_zero_collateral: bool = False
    with_test_token: bool = False


class ContractRecord(BaseModel):
    address: str
    codehash: str
    tx: str


class Deployment(BaseModel):
    """What a deployment file holds: enough for a client, a coordinator or an auditor to find everything."""

    format: str = DEPLOYMENT_FORMAT
    chain_id: int
    start_block: int
    deployer: str
    arbiter: str
    params: DeployParams
    contracts: dict[str, ContractRecord]
    compiler: str
    abis: dict[str, list[dict[str, Any]]]

    def address(self, name: str) -> str:
        try:
            return self.contracts[name].address
        except KeyError:
            raise DeploymentError(f"the deployment has no {name} (it has: {', '.join(self.contracts)})") from None

    def save(self, path: Path) -> None:
        """Write atomically beside `path`; refuse to replace anything but a regular file (e.g. /dev/null)."""
        if path.exists() and not path.is_file():
            raise ConfigError(f"{path} exists and is not a regular file: give another --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"deployment file not found: {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"deployment file {path} is not readable JSON: {exc}") from None
        if raw.get("format") != DEPLOYMENT_FORMAT:
            raise ConfigError(f"{path} is not a llmos deployment file (format {raw.get('format')!r})")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"deployment file {path} is malformed: {exc}") from None


class Suite:
    """The deployed contracts, bound to one Web3."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.workers: Contract = bind(w3, "WorkerRegistry", deployment.address("WorkerRegistry"))
        self.datasets: Contract = bind(w3, "DatasetRegistry", deployment.address("DatasetRegistry"))
        self.market: Contract = bind(w3, "JobMarket", deployment.address("JobMarket"))
        self.token: Contract | None = (
            bind(w3, "TestToken", deployment.address("TestToken")) if "TestToken" in deployment.contracts else None
        )

    def verify(self) -> None:
        """Fail unless this chain is the deployment's and holds its code unchanged."""
        chain_id = int(self.w3.eth.chain_id)
        if chain_id != self.deployment.chain_id:
            raise DeploymentError(
                f"the deployment is for chain {self.deployment.chain_id}, but the node is chain {chain_id}"
            )
        for name, record in self.deployment.contracts.items():
            code = bytes(self.w3.eth.get_code(Web3.to_checksum_address(record.address)))
            if not code:
                raise DeploymentError(f"no contract at {record.address} ({name}): was the chain reset?")
            if "0x" + keccak(code).hex() != record.codehash:
                raise DeploymentError(f"the code at {record.address} is not the deployed {name}")


def deploy_suite(sender: Sender, params: DeployParams | None = None) -> Deployment:
    """Deploy WorkerRegistry, DatasetRegistry and JobMarket (and optionally TestToken) and wire them."""
    params = params or DeployParams()
    w3 = sender.w3
    arbiter = Web3.to_checksum_address(params.arbiter) if params.arbiter else sender.address
    start_block = int(w3.eth.block_number)
    records: dict[str, ContractRecord] = {}

    def record(name: str, contract: Contract, receipt: Any) -> Contract:
        code = bytes(w3.eth.get_code(contract.address))
        records[name] = ContractRecord(
            address=contract.address, codehash="0x" + keccak(code).hex(), tx="0x" + bytes(receipt["transactionHash"]).hex()
        )
        return contract

    datasets = record("DatasetRegistry", *sender.deploy("DatasetRegistry"))
    # The registry takes the market's address immutably: the market is the deployer's next contract.
    nonce = int(w3.eth.get_transaction_count(sender.address, "pending"))
    predicted = get_create_address(sender.address, nonce + 1)
    workers = record("WorkerRegistry", *sender.deploy("WorkerRegistry", predicted, params.unbonding_delay_s))
    market = record(
        "JobMarket",
        *sender.deploy(
            "JobMarket",
            sender.address,
            arbiter,
            workers.address,
            datasets.address,
            params.collateral_per_gpu_wei,
            params.grant_timeout_s,
            params.dispute_window_s,
            params.dispute_bond_wei,
            params.allow_zero_collateral,
        ),
    )
    if market.address != predicted:
        raise DeploymentError(f"the market landed at {market.address}, not the predicted {predicted}: was a transaction sent in between?")
    if params.with_test_token:
        record("TestToken", *sender.deploy("TestToken"))
    names = list(records)
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        start_block=start_block,
        deployer=sender.address,
        arbiter=arbiter,
        params=params,
        contracts=records,
        compiler=artifact("JobMarket")["compiler"],
        abis={name: abi(name) for name in names},
    )
