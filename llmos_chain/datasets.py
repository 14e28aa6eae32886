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
from llmos_chain.chain.market import JobState, MarketClient, get_job, worker_record
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
    keystore.save_data_key(data_key)  # first: a sealed file whose key was never saved would be lost for good
    result = seal_file(src, dst, data_key, chunk_size, progress)
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
    worker_id: int = 0


def plan_grant(suite: Suite, dataset_id: int, job_id: int) -> GrantPlan:
    """Look up the job's assigned worker and its registered key; check the job is on this dataset and waits for a grant."""
    job = get_job(suite, job_id)
    if job.dataset_id != dataset_id:
        raise ConfigError(f"job {job_id} is for dataset {job.dataset_id}, not {dataset_id}")
    if job.state is not JobState.ASSIGNED:
        raise ConfigError(f"job {job_id} is {job.state.name.lower()}, not assigned: only an assigned job can be granted")
    record = worker_record(suite, job.worker_id)
    context = grant_context(suite, dataset_id, job_id, job.worker)
    return GrantPlan(dataset_id, job_id, job.worker, record.key_kind, context, job.worker_id)


def grant_context(suite: Suite, dataset_id: int, job_id: int, worker: str) -> GrantContext:
    """What a grant is bound to: this chain, this market (which records the grant), the dataset, the job, the worker."""
    return GrantContext(int(suite.w3.eth.chain_id), suite.market.address, dataset_id, job_id, worker)


def wrap_for_worker(suite: Suite, plan: GrantPlan, data_key: bytes) -> bytes:
    """The data key wrapped to the planned worker's registered HPKE key, bound to (chain, market, dataset, job, worker)."""
    call(suite.datasets.functions.getDataset(plan.dataset_id))  # reverts with DatasetNotFound for an unknown id
    record = worker_record(suite, plan.worker_id)
    return wrap_key(data_key, record.key_kind, record.encryption_key, plan.context)


def grant_access(owner: MarketClient, keystore: Keystore, dataset_id: int, job_id: int, key_id: str) -> tuple[GrantPlan, TxReceipt]:
    """Wrap the dataset's data key to the job's assigned worker and publish the grant (starts the run window)."""
    suite = owner.suite
    plan = plan_grant(suite, dataset_id, job_id)
    wrapped = wrap_for_worker(suite, plan, keystore.load_data_key(key_id))
    receipt = owner.grant(job_id, wrapped)
    return plan, receipt


def latest_grant(suite: Suite, job_id: int, from_block: int = 0) -> dict[str, Any]:
    """The newest AccessGranted event of `job_id`, read from the market's logs."""
    event = suite.market.events.AccessGranted()
    logs = event.get_logs(from_block=from_block or suite.deployment.start_block, argument_filters={"jobId": job_id})
    if not logs:
        raise SealedDataError(f"no access grant on chain for job {job_id}")
    return {**dict(logs[-1]["args"]), "blockNumber": int(logs[-1]["blockNumber"])}


def recover_data_key(suite: Suite, dataset_id: int, job_id: int, worker: str, key: EncryptionKey, from_block: int = 0) -> bytes:
    """What a worker does: find its grant on chain and unwrap the data key with its private key."""
    if not call(suite.market.functions.canRead(job_id, worker)):
        raise SealedDataError(f"worker {worker} holds no running grant for job {job_id}")
    grant = latest_grant(suite, job_id, from_block)
    return unwrap_key(bytes(grant["wrappedKey"]), key, grant_context(suite, dataset_id, job_id, worker))
