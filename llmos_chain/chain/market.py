"""Typed calls into the deployed suite for one acting account (client, owner, operator or arbiter).

A job is stored on chain as one slot: its state, when that state began, its worker's registry id and a hash
of its fixed terms. The terms themselves are in the job's `JobPosted` event and every later call passes them
back; `get_job` reads both and answers with one `JobView`, so callers never handle the hash themselves.

Each method sends one transaction and returns its receipt; reverts surface as ContractRevertError
carrying the contract's custom error by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from llmos_chain.attestation import Attestation
from llmos_chain.chain.contracts import Sender, call
from llmos_chain.chain.deploy import Suite
from llmos_chain.crypto.keys import KeyKind
from llmos_chain.errors import ChainError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

#: ABI type of `IJobMarket.JobTerms`, in field order.
TERMS_ABI = "(address,address,address,uint96,uint64,uint32,uint8,uint16,uint40,uint32,uint24)"


class JobState(IntEnum):
    """`IJobMarket.JobState`, numbered as the ABI returns it."""

    NONE = 0
    OPEN = 1
    ASSIGNED = 2
    RUNNING = 3
    SUBMITTED = 4
    FAILURE_CLAIMED = 5
    DISPUTED = 6
    FAILURE_DISPUTED = 7
    SETTLED = 8
    CANCELLED = 9
    EXPIRED = 10
    REFUNDED = 11
    FAILED = 12

    @property
    def terminal(self) -> bool:
        return self >= JobState.SETTLED


class ReopenCause(IntEnum):
    GRANT_TIMEOUT = 0
    DROPPED = 1
    RELEASED = 2


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
    """What a client posts (`IJobMarket.JobRequest`). `run_time` is the worker's fair time from the grant."""

    dataset_id: int
    base_model_hash: bytes
    recipe_hash: bytes
    recipe_uri: str
    gpu_count: int
    gpu_mem_gib: int
    deadline: int
    challenge_window: int
    amount: int
    client_key_id: int
    token: str = ZERO_ADDRESS
    run_time: int = 6 * 3600

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.dataset_id,
            self.base_model_hash,
            self.recipe_hash,
            self.recipe_uri,
            self.gpu_count,
            self.gpu_mem_gib,
            self.deadline,
            self.run_time,
            self.challenge_window,
            self.token,
            self.amount,
            self.client_key_id,
        )


@dataclass(frozen=True)
class JobTerms:
    """A job's fixed terms (`IJobMarket.JobTerms`): hashed into the job record, passed back on every call."""

    client: str
    dataset_owner: str
    token: str
    amount: int
    dataset_id: int
    client_key_id: int
    gpu_count: int
    gpu_mem_gib: int
    deadline: int
    run_time: int
    challenge_window: int

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            Web3.to_checksum_address(self.client),
            Web3.to_checksum_address(self.dataset_owner),
            Web3.to_checksum_address(self.token),
            self.amount,
            self.dataset_id,
            self.client_key_id,
            self.gpu_count,
            self.gpu_mem_gib,
            self.deadline,
            self.run_time,
            self.challenge_window,
        )

    def as_list(self) -> list[Any]:
        """JSON-friendly form (the outbox stores call arguments as JSON)."""
        return list(self.as_tuple())

    @property
    def hash(self) -> bytes:
        """The 22-byte hash the job record stores (`bytes22(keccak256(abi.encode(terms)))`)."""
        return keccak(abi_encode([TERMS_ABI], [self.as_tuple()]))[:22]

    @property
    def latest_start(self) -> int:
        """The last second at which a grant still leaves a full run window before the deadline."""
        return self.deadline - self.run_time

    @classmethod
    def from_chain(cls, raw: Any) -> JobTerms:
        if hasattr(raw, "keys"):
            raw = (raw["client"], raw["datasetOwner"], raw["token"], raw["amount"], raw["datasetId"], raw["clientKeyId"], raw["gpuCount"],
                   raw["gpuMemGiB"], raw["deadline"], raw["runTime"], raw["challengeWindow"])
        values = list(raw)
        return cls(str(values[0]), str(values[1]), str(values[2]), *(int(v) for v in values[3:]))


@dataclass(frozen=True)
class JobView:
    """A job: its on-chain record (state, since, worker) with its terms and what its `JobPosted` event said."""

    job_id: int
    state: JobState
    since: int
    worker_id: int
    worker: str
    terms: JobTerms
    base_model_hash: bytes = b""
    recipe_hash: bytes = b""
    recipe_uri: str = ""
    posted_block: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # the terms, by name
    @property
    def client(self) -> str:
        return self.terms.client

    @property
    def token(self) -> str:
        return self.terms.token

    @property
    def escrow(self) -> int:
        return self.terms.amount

    @property
    def dataset_id(self) -> int:
        return self.terms.dataset_id

    @property
    def gpu_count(self) -> int:
        return self.terms.gpu_count

    @property
    def gpu_mem_gib(self) -> int:
        return self.terms.gpu_mem_gib

    @property
    def deadline(self) -> int:
        return self.terms.deadline

    @property
    def run_time(self) -> int:
        return self.terms.run_time

    @property
    def challenge_window(self) -> int:
        return self.terms.challenge_window

    @property
    def client_key_id(self) -> int:
        return self.terms.client_key_id

    @property
    def state_since(self) -> int:
        return self.since

    @property
    def due_at(self) -> int | None:
        """End of the run window (inclusive) while the job is Running."""
        return self.since + self.terms.run_time if self.state is JobState.RUNNING else None


@dataclass(frozen=True)
class ClientKey:
    key_id: int
    client: str
    kind: KeyKind
    public: bytes


_POSTED_CACHE: dict[tuple[str, int, bytes], dict[str, Any]] = {}


def _posted_event(suite: Suite, job_id: int, terms_hash: bytes) -> dict[str, Any]:
    """The `JobPosted` event of `job_id` whose terms hash to `terms_hash` (a reorg may have re-posted the id).

    Cached by (market, job, terms hash) with the block it was found in; a cached entry is used only while that block
    is still on the chain (the recipe and base model are not in the terms hash, so another chain — a reorg, a reset
    dev chain — may hold a job with the same terms and other content)."""
    key = (suite.market.address, job_id, bytes(terms_hash))
    cached = _POSTED_CACHE.get(key)
    if cached is not None:
        try:
            still_there = bytes(suite.w3.eth.get_block(cached["block"])["hash"]) == cached["block_hash"]
        except Exception:  # noqa: BLE001 (a missing block or a node error: look the event up afresh)
            still_there = False
        if still_there:
            return cached
        _POSTED_CACHE.pop(key, None)
    try:
        logs = suite.market.events.JobPosted().get_logs(from_block=suite.deployment.start_block, argument_filters={"jobId": job_id})
    except Exception as exc:  # the node refused or failed: say so, with what we asked
        raise ChainError(f"could not read JobPosted for job {job_id}: {exc}") from exc
    for log in reversed(list(logs)):
        terms = JobTerms.from_chain(log["args"]["terms"])
        if terms.hash == bytes(terms_hash):
            found = {"terms": terms, "args": dict(log["args"]), "block": int(log["blockNumber"]), "block_hash": bytes(log["blockHash"])}
            _POSTED_CACHE[key] = found
            return found
    raise ChainError(f"job {job_id}: no JobPosted event matches its record (the node may lag behind; try again)")


def get_job(suite: Suite, job_id: int) -> JobView:
    """The job's record and terms. Raises ContractRevertError(JobNotFound) for an unknown id."""
    raw = call(suite.market.functions.getJob(job_id))
    state, since, worker_id, worker, terms_hash = JobState(raw[0]), int(raw[1]), int(raw[2]), str(raw[3]), bytes(raw[4])
    posted = _posted_event(suite, job_id, terms_hash)
    args = posted["args"]
    return JobView(job_id, state, since, worker_id, worker, posted["terms"], bytes(args["baseModelHash"]),
                   bytes(args["recipeHash"]), str(args["recipeURI"]), posted["block"])


def job_terms(suite: Suite, job_id: int) -> JobTerms:
    return get_job(suite, job_id).terms


def client_key(suite: Suite, key_id: int) -> ClientKey:
    """A registered client key, from its `ClientKeyRegistered` event."""
    try:
        logs = suite.market.events.ClientKeyRegistered().get_logs(from_block=suite.deployment.start_block, argument_filters={"keyId": key_id})
    except Exception as exc:
        raise ChainError(f"could not read client key {key_id}: {exc}") from exc
    if not logs:
        raise ChainError(f"client key {key_id} is not registered with this market")
    args = logs[-1]["args"]
    return ClientKey(key_id, str(args["client"]), KeyKind.from_chain(int(args["keyKind"])), bytes(args["key"]))


def find_client_key(suite: Suite, client: str, public: bytes) -> int | None:
    """The id under which `client` registered exactly `public`, if it did."""
    logs = suite.market.events.ClientKeyRegistered().get_logs(from_block=suite.deployment.start_block,
                                                              argument_filters={"client": Web3.to_checksum_address(client)})
    for log in reversed(list(logs)):
        if bytes(log["args"]["key"]) == bytes(public):
            return int(log["args"]["keyId"])
    return None


def worker_address(suite: Suite, worker_id: int) -> str:
    return str(call(suite.workers.functions.workerAt(worker_id)))


@dataclass(frozen=True)
class WorkerRecord:
    """`IWorkerRegistry.Worker` with named fields (collateral in wei)."""

    worker_id: int
    operator: str
    status: int
    gpu_count: int
    gpu_mem_gib: int
    active_jobs: int
    locked: int
    stake: int
    unbonding_end: int
    key_kind: KeyKind
    account: str
    price_per_gpu_hour: int
    signer: str
    gpu_model: bytes
    encryption_key: bytes


def worker_record(suite: Suite, worker_id: int) -> WorkerRecord:
    r = call(suite.workers.functions.getWorkerById(worker_id))
    if int(r[1]) == 0:
        raise ChainError(f"no worker with id {worker_id}")
    return WorkerRecord(worker_id, str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]) * 10**9, int(r[6]),
                        int(r[7]), KeyKind.from_chain(int(r[8])), str(r[9]), int(r[10]), str(r[11]), bytes(r[12]), bytes(r[13]))


class MarketClient:
    """One account's view of and actions on the suite."""

    def __init__(self, suite: Suite, sender: Sender) -> None:
        self.suite = suite
        self.sender = sender

    @property
    def address(self) -> str:
        return self.sender.address

    def _market(self, name: str, *args: Any, value: int = 0) -> TxReceipt:
        return self.sender.transact(getattr(self.suite.market.functions, name)(*args), value=value)

    def _terms(self, job_id: int, terms: JobTerms | None) -> tuple[Any, ...]:
        return (terms or job_terms(self.suite, job_id)).as_tuple()

    # ---- workers
    def register_worker(self, worker: str, params: WorkerParams, stake: int) -> TxReceipt:
        return self.sender.transact(self.suite.workers.functions.register(worker, params.as_tuple()), value=stake)

    def worker_id(self, worker: str) -> int:
        worker_id = int(call(self.suite.workers.functions.idOf(Web3.to_checksum_address(worker))))
        if worker_id == 0:
            raise ChainError(f"{worker} is not a registered worker")
        return worker_id

    # ---- datasets
    def register_dataset(self, content_root: bytes, cipher_hash: bytes, size: int, uri: str) -> tuple[int, TxReceipt]:
        receipt = self.sender.transact(self.suite.datasets.functions.registerDataset(content_root, cipher_hash, size, uri))
        event = self.suite.datasets.events.DatasetRegistered().process_receipt(receipt, errors=DISCARD)[0]
        return int(event["args"]["datasetId"]), receipt

    def grant(self, job_id: int, wrapped_key: bytes, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("grantAccess", job_id, self._terms(job_id, terms), wrapped_key)

    def drop_assignment(self, job_id: int, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("dropAssignment", job_id, self._terms(job_id, terms))

    # ---- client keys
    def register_client_key(self, kind: KeyKind, public: bytes) -> tuple[int, TxReceipt]:
        receipt = self._market("registerClientKey", kind.chain_value, public)
        event = self.suite.market.events.ClientKeyRegistered().process_receipt(receipt, errors=DISCARD)[0]
        return int(event["args"]["keyId"]), receipt

    def ensure_client_key(self, kind: KeyKind, public: bytes) -> int:
        """The id of this account's registration of `public`, registering it once if needed."""
        found = find_client_key(self.suite, self.address, public)
        return found if found is not None else self.register_client_key(kind, public)[0]

    # ---- jobs
    def post_job(self, request: JobRequest) -> tuple[int, TxReceipt]:
        value = request.amount if request.token == ZERO_ADDRESS else 0
        receipt = self._market("postJob", request.as_tuple(), value=value)
        event = self.suite.market.events.JobPosted().process_receipt(receipt, errors=DISCARD)[0]
        return int(event["args"]["jobId"]), receipt

    def post_jobs(self, requests: list[JobRequest]) -> tuple[list[int], TxReceipt]:
        value = sum(r.amount for r in requests if r.token == ZERO_ADDRESS)
        receipt = self._market("postJobs", [r.as_tuple() for r in requests], value=value)
        events = self.suite.market.events.JobPosted().process_receipt(receipt, errors=DISCARD)
        return [int(e["args"]["jobId"]) for e in events], receipt

    def assign(self, job_id: int, worker: str, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("assign", job_id, self._terms(job_id, terms), self.worker_id(worker))

    def assign_many(self, job_ids: list[int], worker: str, terms: list[JobTerms] | None = None) -> TxReceipt:
        terms = terms or [job_terms(self.suite, j) for j in job_ids]
        return self._market("assignMany", list(job_ids), [t.as_tuple() for t in terms], self.worker_id(worker))

    def timeout_grant(self, job_id: int, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("timeoutGrant", job_id, self._terms(job_id, terms))

    def submit(self, job_id: int, attestation: Attestation, signature: bytes, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("submitResult", job_id, self._terms(job_id, terms), attestation.as_tuple(), signature)

    def report_failure(self, job_id: int, reason: int, details_hash: bytes, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("reportFailure", job_id, self._terms(job_id, terms), reason, details_hash)

    def accept(self, job_id: int, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("accept", job_id, self._terms(job_id, terms))

    def dispute(self, job_id: int, reason_hash: bytes, terms: JobTerms | None = None, bond: int | None = None) -> TxReceipt:
        bond = dispute_bond(self.suite) if bond is None else bond
        return self._market("dispute", job_id, self._terms(job_id, terms), reason_hash, value=bond)

    def resolve_dispute(self, job_id: int, worker_wins: bool, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("resolveDispute", job_id, self._terms(job_id, terms), worker_wins)

    def resolve_with_evidence(self, job_id: int, worker_wins: bool, evidence: ReplayEvidence,
                              terms: JobTerms | None = None) -> TxReceipt:
        return self._market("resolveDisputeWithEvidence", job_id, self._terms(job_id, terms), worker_wins, evidence.as_tuple())

    def set_arbiter_key(self, key_id: int) -> TxReceipt:
        return self._market("setArbiterKey", key_id)

    def grant_verifier(self, job_id: int, wrapped_key: bytes, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("grantVerifier", job_id, self._terms(job_id, terms), wrapped_key)

    def finalize(self, job_id: int, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("finalize", job_id, self._terms(job_id, terms))

    def cancel(self, job_id: int, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("cancel", job_id, self._terms(job_id, terms))

    def reclaim(self, job_id: int, terms: JobTerms | None = None) -> TxReceipt:
        return self._market("reclaim", job_id, self._terms(job_id, terms))

    def withdraw(self, token: str = ZERO_ADDRESS) -> TxReceipt:
        return self._market("withdraw", token)

    def multicall(self, calls: list[tuple[str, tuple[Any, ...]]]) -> TxReceipt:
        """Several market calls as one transaction, each as (function name, arguments); all or nothing."""
        data = [self.suite.market.encode_abi(name, args=list(args)) for name, args in calls]
        return self._market("multicall", [bytes.fromhex(d.removeprefix("0x")) if isinstance(d, str) else d for d in data])

    def job(self, job_id: int) -> JobView:
        return get_job(self.suite, job_id)


@dataclass(frozen=True)
class ReplayEvidence:
    """What decided a dispute by replay (`DisputeEvidence`): the interval named, the weights hash the worker recorded at
    its end, the one the replay reached (zero when nothing was replayed), and the BLAKE3 hash of the arbiter's report."""

    interval: int
    expected: bytes
    replayed: bytes
    report_hash: bytes

    def as_tuple(self) -> tuple[int, bytes, bytes, bytes]:
        return (self.interval, self.expected.rjust(32, b"\0")[:32], self.replayed.rjust(32, b"\0")[:32], self.report_hash)


def arbiter_key(suite: Suite) -> ClientKey | None:
    """The key the market's arbiter named for verifier grants and sealed checkpoints, if any."""
    key_id = int(call(suite.market.functions.arbiterKeyId()))
    return client_key(suite, key_id) if key_id else None


def dispute_bond(suite: Suite) -> int:
    return int(call(suite.market.functions.disputeBond()))
