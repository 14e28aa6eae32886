"""A deployed suite with named actors, shared by the contract and chain tests.

`World` knows the v2 rules' vocabulary: jobs carry terms (looked up from `JobPosted` by the bindings), posts name
a registered client key (registered once per client and key by `client_key_id`), grants go through the market
(`grantAccess` by the dataset owner), and workers are keyed by registry id. `at(t)` makes the next transaction land
in a block whose timestamp is exactly `t`, which is what the boundary tests need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from llmos_chain.attestation import Attestation, sign
from llmos_chain.chain.connect import Connection
from llmos_chain.chain.contracts import Sender, call
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.devchain import advance_time, is_embedded
from llmos_chain.chain.market import JobRequest, JobTerms, JobView, MarketClient, WorkerParams, ZERO_ADDRESS, get_job
from llmos_chain.crypto.keys import KeyKind

COLLATERAL_PER_GPU = 10**16
GRANT_TIMEOUT = 24 * 3600
DISPUTE_WINDOW = 3 * 24 * 3600
DISPUTE_BOND = 2 * 10**16
UNBONDING = 7 * 24 * 3600
RUN_TIME = 6 * 3600
CHALLENGE_WINDOW = 3600
DEADLINE_IN = 7 * 24 * 3600
PRICE = 5 * 10**16
STAKE = 10**18
ROOT = keccak(text="content-root")
BASE = keccak(text="base-model")
RECIPE = keccak(text="recipe")
#: The default client output key (X25519, 32 bytes) and a grant's wrapped data key (HPKE enc + sealed key).
CLIENT_KEY = b"\x01" * 32
WRAPPED_KEY = b"\x07" * 80

#: `IWorkerRegistry.Worker` field names in ABI order (what `getWorker`/`getWorkerById` return).
WORKER_FIELDS = (
    "operator", "status", "gpu_count", "gpu_mem_gib", "active_jobs", "locked_gwei", "stake", "unbonding_end",
    "key_kind", "account", "price_per_gpu_hour", "signer", "gpu_model", "encryption_key",
)


def h(label: str) -> bytes:
    return keccak(text=label)


def key_kind_of(public: bytes) -> KeyKind:
    """The HPKE suite a raw public key's length implies (32: X25519, 1216: ML-KEM-768 + X25519)."""
    return KeyKind.X25519 if len(public) == 32 else KeyKind.MLKEM768_X25519


@dataclass
class World:
    conn: Connection
    suite: Suite
    accounts: list[LocalAccount]
    dataset_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: (client, key) -> (key id, block number, block hash) of its registration; checked against the chain on use,
    #: so that a snapshot revert that undid the registration is noticed.
    _client_keys: dict[tuple[str, bytes], tuple[int, int, bytes]] = field(default_factory=dict)

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

    def send(self, account: LocalAccount, fn: Any, value: int = 0) -> Any:
        """Send a raw contract call (`suite.x.functions.f(...)`) from `account`; returns the receipt."""
        return Sender(self.w3, account).transact(fn, value=value)

    def account(self, address: str) -> LocalAccount:
        """The dev account with `address` (to act as whoever the chain says holds a role)."""
        for account in self.accounts:
            if account.address.lower() == str(address).lower():
                return account
        raise KeyError(f"{address} is not one of the world's accounts")

    # time
    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> int:
        return advance_time(self.w3, seconds)

    def next_time(self) -> int:
        """Timestamp the next mined block (hence the next transaction) gets, as the chain stands."""
        if is_embedded(self.w3):
            return int(self.w3.provider.ethereum_tester.get_block_by_number("pending")["timestamp"])  # type: ignore[attr-defined]
        return self.now() + 1

    def at(self, timestamp: int) -> int:
        """Make the next transaction be mined in a block whose timestamp is exactly `timestamp`.

        On eth-tester this mines one empty block at `timestamp - 1` (so that gas estimation, which runs on a child of
        the latest block, sees the same time as the transaction); on anvil it sets the next block's timestamp.
        """
        if is_embedded(self.w3):
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            pending = self.next_time()
            if timestamp < pending:
                raise ValueError(f"the next block is already at {pending}; cannot go back to {timestamp}")
            if timestamp > pending:
                tester.time_travel(timestamp)  # mines a block at timestamp - 1; the pending one is at timestamp
            got = self.next_time()
            if got != timestamp:
                raise AssertionError(f"the next block will be at {got}, not {timestamp} (is the wall clock ahead of the chain?)")
        else:
            if timestamp - 1 > self.now():
                self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp - 1])  # type: ignore[arg-type]
                self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
        return timestamp

    def mined_at(self, receipt: Any) -> int:
        return int(self.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    # workers and datasets
    def register_worker(
        self,
        operator: LocalAccount | None = None,
        worker_key: LocalAccount | None = None,
        gpus: int = 8,
        mem: int = 80,
        stake: int = STAKE,
        signer: str | None = None,
    ) -> str:
        """Registers `worker_key`'s address as a worker (its own signer unless `signer` says otherwise)."""
        operator = operator or self.operator
        worker_key = worker_key or self.worker_key
        params = WorkerParams(signer or worker_key.address, "H100-80GB", gpus, mem, 10**15, os.urandom(32))
        self.act(operator).register_worker(worker_key.address, params, stake)
        return str(worker_key.address)

    def worker_id(self, worker: str | None = None) -> int:
        return int(self.suite.workers.functions.idOf(Web3.to_checksum_address(worker or self.worker)).call())

    def worker_record(self, worker: str | int | None = None) -> SimpleNamespace:
        """The worker's record with named fields (`stake`, `locked`, `active_jobs`, …); by address or by id."""
        fn = self.suite.workers.functions
        raw = fn.getWorkerById(worker).call() if isinstance(worker, int) else fn.getWorker(worker or self.worker).call()
        record = SimpleNamespace(**dict(zip(WORKER_FIELDS, raw, strict=True)))
        record.locked = record.locked_gwei * 10**9
        return record

    def locked(self, worker: str | int | None = None) -> int:
        worker_id = worker if isinstance(worker, int) else self.worker_id(worker)
        return int(self.suite.workers.functions.lockedOf(worker_id).call())

    def register_dataset(self, owner: LocalAccount | None = None) -> int:
        dataset_id, _ = self.act(owner or self.owner).register_dataset(ROOT, h("cipher"), 4096, "file:///tmp/d.sealed")
        self.dataset_id = dataset_id
        return dataset_id

    # clients
    def client_key_id(self, client: LocalAccount | None = None, public: bytes = CLIENT_KEY) -> int:
        """The id of `public` registered by `client`, registered on first use (once per client and key)."""
        client = client or self.client
        key = (client.address, bytes(public))
        known = self._client_keys.get(key)
        if known is not None:
            key_id, number, block_hash = known
            try:
                if bytes(self.w3.eth.get_block(number)["hash"]) == block_hash:
                    return key_id
            except Exception:  # the block is gone (a snapshot revert): register again
                pass
        key_id, receipt = self.act(client).register_client_key(key_kind_of(public), bytes(public))
        self._client_keys[key] = (key_id, int(receipt["blockNumber"]), bytes(receipt["blockHash"]))
        return key_id

    def fund_token(self, account: LocalAccount | None = None, amount: int = 10**24) -> Any:
        """Mints test tokens to `account` (the client by default) and approves the market; returns the token."""
        token = self.suite.token
        assert token is not None, "deployed without the test token"
        account = account or self.client
        self.send(account, token.functions.mint(account.address, amount))
        self.send(account, token.functions.approve(self.suite.market.address, 2**256 - 1))
        return token

    def request(self, client: LocalAccount | None = None, client_key: bytes | None = None, **overrides: Any) -> JobRequest:
        """A job request with sensible defaults; `client_key` (raw public key) is registered and named by id."""
        values: dict[str, Any] = dict(
            dataset_id=self.dataset_id,
            base_model_hash=BASE,
            recipe_hash=RECIPE,
            recipe_uri="file:///tmp/recipe.json",
            gpu_count=1,
            gpu_mem_gib=16,
            deadline=self.now() + DEADLINE_IN,
            run_time=RUN_TIME,
            challenge_window=CHALLENGE_WINDOW,
            amount=PRICE,
            token=ZERO_ADDRESS,
        )
        values.update(overrides)
        if "client_key_id" not in values:
            values["client_key_id"] = self.client_key_id(client, CLIENT_KEY if client_key is None else client_key)
        return JobRequest(**values)

    # jobs
    def post(self, client: LocalAccount | None = None, **overrides: Any) -> int:
        job_id, _ = self.act(client or self.client).post_job(self.request(client=client, **overrides))
        return job_id

    def assign(self, job_id: int, operator: LocalAccount | None = None, worker: str | None = None) -> Any:
        return self.act(operator or self.operator).assign(job_id, worker or self.worker)

    def grant(self, job_id: int, owner: LocalAccount | None = None, wrapped_key: bytes = WRAPPED_KEY) -> Any:
        """The dataset owner (from the job's terms, unless `owner` is given) grants the assigned worker access."""
        terms = self.terms(job_id)
        return self.act(owner or self.account(terms.dataset_owner)).grant(job_id, wrapped_key, terms)

    def run_job(self, client: LocalAccount | None = None, operator: LocalAccount | None = None, worker: str | None = None,
                **overrides: Any) -> int:
        """Post, assign and grant: a Running job whose run window opened at the grant's block."""
        job = self.post(client, **overrides)
        self.assign(job, operator, worker)
        self.grant(job)
        return job

    def submitted_job(self, **overrides: Any) -> int:
        job = self.run_job(**overrides)
        self.submit(job)
        return job

    def attestation(self, job: int, **overrides: Any) -> Attestation:
        """An attestation for `job` by the default worker (pass `worker=` for another), ending at the latest block."""
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

    def signer_of(self, job_id: int) -> LocalAccount:
        """The account that signs for the job's worker now (its registry signer)."""
        _, signer = self.suite.workers.functions.signerOf(self.job(job_id).worker_id).call()
        return self.account(signer)

    def attest(self, job_id: int, key: LocalAccount | None = None, **overrides: Any) -> tuple[Attestation, bytes]:
        """An attestation for the job's own worker, signed by its current signer (or `key`)."""
        view = self.job(job_id)
        worker = view.worker if view.worker != ZERO_ADDRESS else self.worker
        att = self.attestation(job_id, **{"worker": worker, **overrides})
        return att, self.sign(att, key or self.signer_of(job_id))

    def submit(self, job_id: int, relayer: LocalAccount | None = None, key: LocalAccount | None = None) -> Attestation:
        att, signature = self.attest(job_id, key)
        self.act(relayer or self.operator).submit(job_id, att, signature)
        return att

    def job(self, job_id: int) -> JobView:
        return get_job(self.suite, job_id)

    def terms(self, job_id: int) -> JobTerms:
        return self.job(job_id).terms

    def state(self, job_id: int) -> Any:
        return self.job(job_id).state

    def credits(self, account: str, token: str = ZERO_ADDRESS) -> int:
        return int(self.suite.market.functions.credits(token, account).call())

    def dispute_bond(self) -> int:
        return int(call(self.suite.market.functions.disputeBond()))


def deploy_world(conn: Connection, **params: Any) -> World:
    accounts = conn.dev_accounts()
    defaults: dict[str, Any] = dict(
        arbiter=accounts[1].address,
        collateral_per_gpu_wei=COLLATERAL_PER_GPU,
        grant_timeout_s=GRANT_TIMEOUT,
        dispute_window_s=DISPUTE_WINDOW,
        dispute_bond_wei=DISPUTE_BOND,
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


def ctrl_c_reaches_it() -> None:
    """`preexec_fn` for a child a test stops with SIGINT as Ctrl-C would: the default disposition, as a terminal's
    foreground process has. A suite started in the background by a non-interactive shell inherits SIGINT ignored, and a
    child that keeps Python's default handling would then never see the test's Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
