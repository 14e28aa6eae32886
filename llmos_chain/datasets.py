"""What a data owner does with a dataset: seal it, register it, grant and revoke access; and how a
granted worker recovers the data key from the chain."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from web3.types import TxReceipt

from llmos_chain.chain.contracts import call
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.market import MarketClient, get_job, ZERO_ADDRESS
from llmos_chain.crypto.keys import EncryptionKey, GrantContext, Keystore, KeyKind, unwrap_key, wrap_key
from llmos_chain.crypto.stream import DEFAULT_CHUNK_SIZE, Progress, SealResult, new_data_key, seal_file
from llmos_chain.errors import ConfigError, SealedDataError

MANIFEST_FORMAT = "llmos-sealed-manifest/1"


@dataclass(frozen=True)
class Manifest:
    """The public facts about a sealed file, written beside it as `<file>.json` (no secrets)."""

    content_root: str
    cipher_hash: str
    key_id: str
    plaintext_size: int
    sealed_size: int
    chunks: int
    chunk_size: int
    format: str = MANIFEST_FORMAT

    @classmethod
    def of(cls, result: SealResult) -> Manifest:
        j = result.to_json()
        return cls(**{k: j[k] for k in ("content_root", "cipher_hash", "key_id", "plaintext_size", "sealed_size", "chunks", "chunk_size")})  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {raw.get('format')!r}")
            return cls(**raw)
        except FileNotFoundError:
            raise ConfigError(f"no manifest at {path}: seal the file with `llmos dataset seal`, or pass --content-root") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"manifest {path} is malformed: {exc}") from None

    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.content_root.removeprefix("0x"))

    def cipher_bytes(self) -> bytes:
        return bytes.fromhex(self.cipher_hash.removeprefix("0x"))


def manifest_path(sealed: Path) -> Path:
    return sealed.with_name(sealed.name + ".json")


def seal_dataset(
    src: Path, dst: Path, keystore: Keystore, key_id: str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> Manifest:
    """Seal `src` to `dst` under a new data key (or the keystore's `key_id`) and write the manifest."""
    data_key = keystore.load_data_key(key_id) if key_id else new_data_key()
    result = seal_file(src, dst, data_key, chunk_size, progress)
    keystore.save_data_key(data_key)
    manifest = Manifest.of(result)
    manifest.save(manifest_path(dst))
    return manifest


def register_dataset(owner: MarketClient, manifest: Manifest, uri: str) -> tuple[int, TxReceipt]:
    if not uri:
        raise ConfigError("a dataset needs a URI where workers can fetch the sealed file")
    return owner.register_dataset(manifest.root_bytes(), manifest.cipher_bytes(), manifest.plaintext_size, uri)


@dataclass(frozen=True)
class GrantPlan:
    dataset_id: int
    job_id: int
    worker: str
    key_kind: KeyKind
    context: GrantContext


def plan_grant(suite: Suite, dataset_id: int, job_id: int) -> GrantPlan:
    """Look up the job's assigned worker and its registered key; check the job is on this dataset."""
    job = get_job(suite, job_id)
    if job.dataset_id != dataset_id:
        raise ConfigError(f"job {job_id} is for dataset {job.dataset_id}, not {dataset_id}")
    if job.worker == ZERO_ADDRESS:
        raise ConfigError(f"job {job_id} has no assigned worker yet (state {job.state.name}); grant after assignment")
    record = call(suite.workers.functions.getWorker(job.worker))
    kind = KeyKind.from_chain(int(record[5]))
    context = GrantContext(int(suite.w3.eth.chain_id), suite.datasets.address, dataset_id, job_id, job.worker)
    return GrantPlan(dataset_id, job_id, job.worker, kind, context)


def wrap_for_worker(suite: Suite, plan: GrantPlan, data_key: bytes) -> bytes:
    """The data key wrapped to the planned worker's registered HPKE key, bound to (chain, registry, dataset, job, worker)."""
    call(suite.datasets.functions.getDataset(plan.dataset_id))  # reverts with DatasetNotFound for an unknown id
    worker_key = bytes(call(suite.workers.functions.getWorker(plan.worker))[12])
    return wrap_key(data_key, plan.key_kind, worker_key, plan.context)


def grant_access(owner: MarketClient, keystore: Keystore, dataset_id: int, job_id: int, key_id: str, ttl_s: int) -> tuple[GrantPlan, TxReceipt]:
    """Wrap the dataset's data key to the job's assigned worker and publish the grant (starts the job)."""
    suite = owner.suite
    plan = plan_grant(suite, dataset_id, job_id)
    wrapped = wrap_for_worker(suite, plan, keystore.load_data_key(key_id))
    now = int(suite.w3.eth.get_block("latest")["timestamp"])
    receipt = owner.grant(dataset_id, job_id, plan.worker, now + ttl_s, wrapped)
    return plan, receipt


def latest_grant(suite: Suite, dataset_id: int, job_id: int, worker: str, from_block: int = 0) -> dict[str, Any]:
    """The newest AccessGranted event for (dataset, job, worker), read from the chain's logs."""
    event = suite.datasets.events.AccessGranted()
    logs = event.get_logs(from_block=from_block, argument_filters={"datasetId": dataset_id, "jobId": job_id, "worker": worker})
    if not logs:
        raise SealedDataError(f"no access grant on chain for dataset {dataset_id}, job {job_id}, worker {worker}")
    return dict(logs[-1]["args"])


def recover_data_key(suite: Suite, dataset_id: int, job_id: int, worker: str, key: EncryptionKey, from_block: int = 0) -> bytes:
    """What a worker does: find its grant on chain and unwrap the data key with its private key."""
    if not call(suite.datasets.functions.canRead(dataset_id, job_id, worker)):
        raise SealedDataError(f"worker {worker} may not read dataset {dataset_id} for job {job_id} now (no grant, expired or revoked)")
    grant = latest_grant(suite, dataset_id, job_id, worker, from_block)
    context = GrantContext(int(suite.w3.eth.chain_id), suite.datasets.address, dataset_id, job_id, worker)
    return unwrap_key(bytes(grant["wrappedKey"]), key, context)
