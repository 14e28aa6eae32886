"""`llmos demo`: the marketplace end to end on the embedded chain (or a dev node with --rpc).

Two providers register GPU workers with HPKE keys and stakes; a data owner seals the sample
customer-support dataset and registers its hashes; a client posts three jobs (ETH and ERC-20 escrow);
operators take them; the owner grants each assigned worker the data key (wrapped to that worker for
that job); each worker recovers the key from the chain, verifies the download against the cipher hash
and the plaintext against the content root, computes its result in memory, seals it to the client and
submits a signed EIP-712 attestation; the client accepts, operators withdraw, and the client opens one
result. Fine-tuning itself arrives with the worker runtime (`worker/`); until then the workers' job is
a private statistics pass over the dataset, so that every other step is the real one.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import blake3
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from llmos_chain.attestation import Attestation, sign
from llmos_chain.chain.connect import Connection, connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.market import JobRequest, MarketClient, WorkerParams, ZERO_ADDRESS, get_job
from llmos_chain.crypto import stream
from llmos_chain.crypto.fetch import fetch
from llmos_chain.crypto.keys import EncryptionKey, Keystore, KeyKind, OutputContext, unwrap_key, wrap_key
from llmos_chain.datasets import grant_access, recover_data_key, register_dataset, seal_dataset
from llmos_chain.errors import ConfigError


@dataclass
class DemoWorker:
    name: str
    operator: LocalAccount
    signer: LocalAccount
    key: EncryptionKey
    gpus: int
    mem: int
    price: int

    @property
    def address(self) -> str:
        return str(self.signer.address)


@dataclass
class DemoJob:
    job_id: int
    spec: str
    token: str
    worker: DemoWorker | None = None
    gas: dict[str, int] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)


def sample_dataset() -> Path:
    return Path(str(resources.files("llmos_chain.samples").joinpath("support_intents.jsonl")))


def _emit(progress: Any, message: str) -> None:
    if progress is not None:
        progress(message)


def run_demo(rpc: str = "embedded", workdir: Path | None = None, progress: Any = None) -> dict[str, Any]:
    started = time.perf_counter()
    conn: Connection = connect(rpc)
    accounts = conn.dev_accounts()
    if len(accounts) < 8:
        raise ConfigError("the demo needs a dev chain with funded accounts (embedded, or anvil via --rpc)")
    w3 = conn.w3
    deployer, arbiter, owner, client = accounts[0], accounts[1], accounts[2], accounts[3]
    tmp = tempfile.TemporaryDirectory(prefix="llmos-demo-") if workdir is None else None
    root = Path(tmp.name) if tmp else Path(workdir)  # type: ignore[arg-type]
    try:
        _emit(progress, "deploying contracts")
        suite = Suite(w3, deploy_suite(Sender(w3, deployer), DeployParams(arbiter=arbiter.address, with_test_token=True)))
        assert suite.token is not None

        workers = [
            DemoWorker("h100-node", accounts[4], accounts[5], EncryptionKey.generate(KeyKind.X25519), 8, 80, 2 * 10**15),
            DemoWorker("l4-node", accounts[6], accounts[7], EncryptionKey.generate(KeyKind.MLKEM768_X25519), 1, 24, 5 * 10**14),
        ]
        _emit(progress, "registering workers")
        for w in workers:
            params = WorkerParams(w.address, w.name.upper(), w.gpus, w.mem, w.price, w.key.public_bytes(), w.key.kind)
            MarketClient(suite, Sender(w3, w.operator)).register_worker(w.address, params, stake=10**18)

        _emit(progress, "sealing and registering the dataset")
        owner_store = Keystore(root / "owner-keystore")
        sealed_path = root / "support_intents.sealed"
        manifest = seal_dataset(sample_dataset(), sealed_path, owner_store, chunk_size=4096)
        owner_c = MarketClient(suite, Sender(w3, owner))
        dataset_id, _ = register_dataset(owner_c, manifest, sealed_path.as_uri())

        client_key = EncryptionKey.generate()
        client_c = MarketClient(suite, Sender(w3, client))
        Sender(w3, client).transact(suite.token.functions.mint(client.address, 10**21))
        Sender(w3, client).transact(suite.token.functions.approve(suite.market.address, 2**256 - 1))
        now = int(w3.eth.get_block("latest")["timestamp"])
        specs = [("intent classifier, 1 GPU", 1, 16, ZERO_ADDRESS), ("intent classifier, 4 GPUs", 4, 40, ZERO_ADDRESS),
                 ("intent classifier, 1 GPU, paid in LTT", 1, 16, suite.token.address)]
        jobs: list[DemoJob] = []
        _emit(progress, "posting jobs")
        for spec, gpus, mem, token in specs:
            recipe = json.dumps({"task": "sequence-classification", "base_model": "minilm-l6", "spec": spec}).encode()
            request = JobRequest(dataset_id, keccak(text="minilm-l6"), keccak(recipe), "inline:" + spec, gpus, mem,
                                 now + 86_400, 3_600, 10**16 * gpus, client_key.public_bytes(), token)
            job_id, receipt = client_c.post_job(request)
            job = DemoJob(job_id, spec, token)
            job.gas["post"] = int(receipt["gasUsed"])
            job.output["request"] = request
            jobs.append(job)

        _emit(progress, "assigning, granting, running")
        for job in jobs:
            view = get_job(suite, job.job_id)
            # Interim rule until the coordinator's LP allocator: the cheapest worker that fits.
            fits = [w for w in workers if w.gpus >= view.gpu_count and w.mem >= view.gpu_mem_gib]
            worker = min(fits, key=lambda w: w.price)
            job.worker = worker
            job.gas["assign"] = int(MarketClient(suite, Sender(w3, worker.operator)).assign(job.job_id, worker.address)["gasUsed"])
            _, receipt = grant_access(owner_c, owner_store, dataset_id, job.job_id, manifest.key_id, ttl_s=86_400)
            job.gas["grant"] = int(receipt["gasUsed"])
            job.gas["submit"], job.output["path"] = _work(suite, job, worker, dataset_id, root, client.address, client_key)

        _emit(progress, "accepting and paying out")
        for job in jobs:
            job.gas["accept"] = int(client_c.accept(job.job_id)["gasUsed"])
        for w in workers:
            operator = MarketClient(suite, Sender(w3, w.operator))
            for token in (ZERO_ADDRESS, suite.token.address):
                if suite.market.functions.credits(token, w.operator.address).call():
                    operator.withdraw(token)

        first = jobs[0]
        report = _client_open(suite, first, client.address, client_key)
        return {
            "chain_id": conn.chain_id,
            "dataset": {"id": dataset_id, "content_root": manifest.content_root, "cipher_hash": manifest.cipher_hash},
            "jobs": [
                {"id": j.job_id, "spec": j.spec, "state": get_job(suite, j.job_id).state.name.lower(),
                 "worker": j.worker.address if j.worker else None, "worker_name": j.worker.name if j.worker else None,
                 "currency": "ETH" if j.token == ZERO_ADDRESS else "LTT", "gas": j.gas, "gas_total": sum(j.gas.values())}
                for j in jobs
            ],
            "client_opened": {"job": first.job_id, "report": report},
            "wall_s": round(time.perf_counter() - started, 2),
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def _work(suite: Suite, job: DemoJob, worker: DemoWorker, dataset_id: int, root: Path, client: str,
          client_key: EncryptionKey) -> tuple[int, str]:
    """One worker's turn: key from chain, verified fetch, in-memory decrypt, sealed result, signed attestation."""
    w3 = suite.w3
    start = int(w3.eth.get_block("latest")["timestamp"])
    data_key = recover_data_key(suite, dataset_id, job.job_id, worker.address, worker.key)
    record = suite.datasets.functions.getDataset(dataset_id).call()
    path = fetch(record[4], root / "fetch", bytes(record[3]))
    with stream.SealedFile.open(path) as sealed_file:
        plaintext = stream.open_to_memory(sealed_file, data_key, bytes(record[2]))
    rows = [json.loads(line) for line in plaintext.decode().splitlines() if line.strip()]
    report = json.dumps({"examples": len(rows), "labels": dict(sorted(Counter(r["label"] for r in rows).items()))}).encode()
    plaintext[:] = bytes(len(plaintext))  # the worker keeps no plaintext once done

    out_key = stream.new_data_key()
    sealed, _ = stream.seal_bytes(report, out_key)
    context = OutputContext(int(w3.eth.chain_id), suite.market.address, job.job_id, client)
    wrapped = wrap_key(out_key, client_key.kind, client_key.public_bytes(), context)
    out_dir = root / "results" / str(job.job_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "output.sealed").write_bytes(sealed)
    (out_dir / "output.key").write_bytes(wrapped)

    request: JobRequest = job.output["request"]
    end = int(w3.eth.get_block("latest")["timestamp"])
    att = Attestation(
        job_id=job.job_id, worker=worker.address, dataset_root=bytes(record[2]), base_model_hash=request.base_model_hash,
        recipe_hash=request.recipe_hash, output_hash=blake3.blake3(sealed).digest(), metrics_hash=blake3.blake3(report).digest(),
        trajectory_root=b"\x00" * 32, start_time=start, end_time=end,
    )
    signature = sign(att, worker.signer, int(w3.eth.chain_id), suite.market.address)
    receipt = MarketClient(suite, Sender(w3, worker.operator)).submit(job.job_id, att, signature)
    return int(receipt["gasUsed"]), str(out_dir)


def _client_open(suite: Suite, job: DemoJob, client: str, client_key: EncryptionKey) -> dict[str, Any]:
    out_dir = Path(job.output["path"])
    context = OutputContext(int(suite.w3.eth.chain_id), suite.market.address, job.job_id, client)
    key = unwrap_key((out_dir / "output.key").read_bytes(), client_key, context)
    return json.loads(bytes(stream.open_to_memory((out_dir / "output.sealed").read_bytes(), key)))
