"""A deployed suite with named actors, shared by the contract and chain tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from llmos_chain.attestation import Attestation, sign
from llmos_chain.chain.connect import Connection
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.devchain import advance_time
from llmos_chain.chain.market import JobRequest, MarketClient, WorkerParams, ZERO_ADDRESS, get_job

COLLATERAL_PER_GPU = 10**16
GRANT_TIMEOUT = 24 * 3600
UNBONDING = 7 * 24 * 3600
PRICE = 5 * 10**16
STAKE = 10**18
ROOT = keccak(text="content-root")
BASE = keccak(text="base-model")
RECIPE = keccak(text="recipe")


def h(label: str) -> bytes:
    return keccak(text=label)


@dataclass
class World:
    conn: Connection
    suite: Suite
    accounts: list[LocalAccount]
    dataset_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def w3(self) -> Web3:
        return self.conn.w3

    # named actors
    @property
    def deployer(self) -> LocalAccount:
        return self.accounts[0]

    @property
    def arbiter(self) -> LocalAccount:
        return self.accounts[1]

    @property
    def owner(self) -> LocalAccount:
        return self.accounts[2]

    @property
    def client(self) -> LocalAccount:
        return self.accounts[3]

    @property
    def operator(self) -> LocalAccount:
        return self.accounts[4]

    @property
    def worker_key(self) -> LocalAccount:
        return self.accounts[5]

    @property
    def worker(self) -> str:
        return str(self.worker_key.address)

    @property
    def stranger(self) -> LocalAccount:
        return self.accounts[6]

    def act(self, account: LocalAccount) -> MarketClient:
        return MarketClient(self.suite, Sender(self.w3, account))

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> int:
        return advance_time(self.w3, seconds)

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    # scenario steps
    def register_worker(
        self,
        operator: LocalAccount | None = None,
        worker_key: LocalAccount | None = None,
        gpus: int = 8,
        mem: int = 80,
        stake: int = STAKE,
    ) -> str:
        operator = operator or self.operator
        worker_key = worker_key or self.worker_key
        params = WorkerParams(worker_key.address, "H100-80GB", gpus, mem, 10**15, os.urandom(32))
        self.act(operator).register_worker(worker_key.address, params, stake)
        return str(worker_key.address)

    def register_dataset(self, owner: LocalAccount | None = None) -> int:
        dataset_id, _ = self.act(owner or self.owner).register_dataset(ROOT, h("cipher"), 4096, "file:///tmp/d.sealed")
        self.dataset_id = dataset_id
        return dataset_id

    def request(self, **overrides: Any) -> JobRequest:
        values: dict[str, Any] = dict(
            dataset_id=self.dataset_id,
            base_model_hash=BASE,
            recipe_hash=RECIPE,
            recipe_uri="file:///tmp/recipe.json",
            gpu_count=1,
            gpu_mem_gib=16,
            deadline=self.now() + 7 * 24 * 3600,
            challenge_window=3600,
            amount=PRICE,
            client_key=b"\x01" * 32,
            token=ZERO_ADDRESS,
        )
        values.update(overrides)
        return JobRequest(**values)

    def post(self, client: LocalAccount | None = None, **overrides: Any) -> int:
        job_id, _ = self.act(client or self.client).post_job(self.request(**overrides))
        return job_id

    def assign(self, job_id: int, operator: LocalAccount | None = None, worker: str | None = None) -> None:
        self.act(operator or self.operator).assign(job_id, worker or self.worker)

    def grant(self, job_id: int, worker: str | None = None, ttl: int = 7 * 24 * 3600) -> None:
        self.act(self.owner).grant(self.dataset_id, job_id, worker or self.worker, self.now() + ttl, os.urandom(80))

    def attestation(self, job: int, **overrides: Any) -> Attestation:
        t = self.now()
        values: dict[str, Any] = dict(
            job_id=job,
            worker=self.worker,
            dataset_root=ROOT,
            base_model_hash=BASE,
            recipe_hash=RECIPE,
            output_hash=h(f"out-{job}"),
            metrics_hash=h("metrics"),
            trajectory_root=h("trajectory"),
            start_time=max(0, t - 60),
            end_time=t,
        )
        values.update(overrides)
        return Attestation(**values)

    def sign(self, att: Attestation, key: LocalAccount | None = None, chain_id: int | None = None, market: str | None = None) -> bytes:
        return sign(att, key or self.worker_key, chain_id or self.conn.chain_id, market or self.suite.market.address)

    def submit(self, job_id: int, relayer: LocalAccount | None = None) -> Attestation:
        att = self.attestation(job_id)
        self.act(relayer or self.operator).submit(job_id, att, self.sign(att))
        return att

    def job(self, job_id: int) -> Any:
        return get_job(self.suite, job_id)

    def credits(self, account: str, token: str = ZERO_ADDRESS) -> int:
        return int(self.suite.market.functions.credits(token, account).call())

    def worker_record(self, worker: str | None = None) -> Any:
        return self.suite.workers.functions.getWorker(worker or self.worker).call()


def deploy_world(conn: Connection, **params: Any) -> World:
    accounts = conn.dev_accounts()
    defaults: dict[str, Any] = dict(
        arbiter=accounts[1].address,
        collateral_per_gpu_wei=COLLATERAL_PER_GPU,
        grant_timeout_s=GRANT_TIMEOUT,
        unbonding_delay_s=UNBONDING,
        with_test_token=True,
    )
    defaults.update(params)
    deployment = deploy_suite(Sender(conn.w3, accounts[0]), DeployParams(**defaults))
    return World(conn=conn, suite=Suite(conn.w3, deployment), accounts=accounts)


class _Reverts:
    """`with reverts("JobNotClient", jobId=1):` — asserts a ContractRevertError by custom-error name and fields."""

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = name
        self.fields = fields
        self.error: Any = None

    def __enter__(self) -> _Reverts:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        from llmos_chain.errors import ContractRevertError

        if exc is None:
            raise AssertionError(f"expected a revert with {self.name}, but the call succeeded")
        if not isinstance(exc, ContractRevertError):
            return False
        assert exc.name == self.name, f"expected {self.name}, got {exc}"
        for key, value in self.fields.items():
            got = exc.fields.get(key)
            if isinstance(got, str) and isinstance(value, str):
                assert got.lower() == value.lower(), f"{key}: expected {value}, got {got}"
            else:
                assert got == value, f"{key}: expected {value!r}, got {got!r}"
        self.error = exc
        return True


def reverts(name: str, **fields: Any) -> _Reverts:
    return _Reverts(name, **fields)
