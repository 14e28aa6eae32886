"""Typed calls into the deployed suite for one acting account (client, owner, operator or arbiter).

Each method sends one transaction and returns its receipt; reverts surface as ContractRevertError
carrying the contract's custom error by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from web3.logs import DISCARD
from web3.types import TxReceipt

from llmos_chain.attestation import Attestation
from llmos_chain.chain.contracts import Sender, call
from llmos_chain.chain.deploy import Suite
from llmos_chain.crypto.keys import KeyKind

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class JobState(IntEnum):
    NONE = 0
    OPEN = 1
    ASSIGNED = 2
    RUNNING = 3
    SUBMITTED = 4
    DISPUTED = 5
    SETTLED = 6
    CANCELLED = 7
    EXPIRED = 8
    REFUNDED = 9
    FAILED = 10

    @property
    def terminal(self) -> bool:
        return self >= JobState.SETTLED


@dataclass(frozen=True)
class WorkerParams:
    signer: str
    gpu_model: str
    gpu_count: int
    gpu_mem_gib: int
    price_per_gpu_hour: int
    encryption_key: bytes
    key_kind: KeyKind = KeyKind.X25519

    def as_tuple(self) -> tuple[Any, ...]:
        model = self.gpu_model.encode()[:32].ljust(32, b"\0")
        return (self.signer, model, self.gpu_count, self.gpu_mem_gib, self.price_per_gpu_hour, self.key_kind.chain_value, self.encryption_key)


@dataclass(frozen=True)
class JobRequest:
    dataset_id: int
    base_model_hash: bytes
    recipe_hash: bytes
    recipe_uri: str
    gpu_count: int
    gpu_mem_gib: int
    deadline: int
    challenge_window: int
    amount: int
    client_key: bytes
    token: str = ZERO_ADDRESS

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.dataset_id,
            self.base_model_hash,
            self.recipe_hash,
            self.recipe_uri,
            self.gpu_count,
            self.gpu_mem_gib,
            self.deadline,
            self.challenge_window,
            self.token,
            self.amount,
            self.client_key,
        )


@dataclass(frozen=True)
class JobView:
    """`JobMarket.getJob` with named fields."""

    job_id: int
    client: str
    state: JobState
    gpu_count: int
    state_since: int
    deadline: int
    worker: str
    dataset_id: int
    challenge_window: int
    gpu_mem_gib: int
    token: str
    escrow: int


class MarketClient:
    """One account's view of and actions on the suite."""

    def __init__(self, suite: Suite, sender: Sender) -> None:
        self.suite = suite
        self.sender = sender

    @property
    def address(self) -> str:
        return self.sender.address

    # ---- workers
    def register_worker(self, worker: str, params: WorkerParams, stake: int) -> TxReceipt:
        return self.sender.transact(self.suite.workers.functions.register(worker, params.as_tuple()), value=stake)

    # ---- datasets
    def register_dataset(self, content_root: bytes, cipher_hash: bytes, size: int, uri: str) -> tuple[int, TxReceipt]:
        receipt = self.sender.transact(self.suite.datasets.functions.registerDataset(content_root, cipher_hash, size, uri))
        event = self.suite.datasets.events.DatasetRegistered().process_receipt(receipt, errors=DISCARD)[0]
        return int(event["args"]["datasetId"]), receipt

    def grant(self, dataset_id: int, job_id: int, worker: str, expires_at: int, wrapped_key: bytes) -> TxReceipt:
        fn = self.suite.datasets.functions.grantAccess(dataset_id, job_id, worker, expires_at, wrapped_key)
        return self.sender.transact(fn)

    def revoke(self, dataset_id: int, job_id: int, worker: str) -> TxReceipt:
        return self.sender.transact(self.suite.datasets.functions.revokeAccess(dataset_id, job_id, worker))

    # ---- jobs
    def post_job(self, request: JobRequest) -> tuple[int, TxReceipt]:
        value = request.amount if request.token == ZERO_ADDRESS else 0
        receipt = self.sender.transact(self.suite.market.functions.postJob(request.as_tuple()), value=value)
        event = self.suite.market.events.JobPosted().process_receipt(receipt, errors=DISCARD)[0]
        return int(event["args"]["jobId"]), receipt

    def assign(self, job_id: int, worker: str) -> TxReceipt:
        return self.sender.transact(self.suite.market.functions.assign(job_id, worker))

    def start(self, job_id: int) -> TxReceipt:
        return self.sender.transact(self.suite.market.functions.startJob(job_id))

    def submit(self, job_id: int, attestation: Attestation, signature: bytes) -> TxReceipt:
        fn = self.suite.market.functions.submitResult(job_id, attestation.as_tuple(), signature)
        return self.sender.transact(fn)

    def accept(self, job_id: int) -> TxReceipt:
        return self.sender.transact(self.suite.market.functions.accept(job_id))

    def dispute(self, job_id: int, reason_hash: bytes) -> TxReceipt:
        return self.sender.transact(self.suite.market.functions.dispute(job_id, reason_hash))

    def cancel(self, job_id: int) -> TxReceipt:
        return self.sender.transact(self.suite.market.functions.cancel(job_id))

    def reclaim(self, job_id: int) -> TxReceipt:
        return self.sender.transact(self.suite.market.functions.reclaim(job_id))

    def withdraw(self, token: str = ZERO_ADDRESS) -> TxReceipt:
        return self.sender.transact(self.suite.market.functions.withdraw(token))

    def job(self, job_id: int) -> JobView:
        return get_job(self.suite, job_id)


def get_job(suite: Suite, job_id: int) -> JobView:
    raw = call(suite.market.functions.getJob(job_id))
    return JobView(job_id, raw[0], JobState(raw[1]), *raw[2:])
