"""One job, start to finish, as a worker runs it.

read the job → fetch and check the recipe → fetch the sealed dataset and check its cipher hash →
unwrap the data key from the owner's grant → decrypt in memory and check the content root → parse →
load and check the base model → evaluate → train → evaluate → seal the output to the client → write
the result bundle → build and sign the EIP-712 attestation.

Plaintext training data exists only in memory and is wiped when the run ends. Every failure is a
named WorkerError with the reason code a failure report carries on-chain.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
from eth_account.signers.local import LocalAccount
from web3.exceptions import Web3Exception

from llmos_chain.attestation import Attestation, sign
from llmos_chain.chain.contracts import call
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.market import JobState, arbiter_key, client_key, get_job
from llmos_chain.crypto import stream
from llmos_chain.crypto.fetch import fetch
from llmos_chain.crypto.keys import (CheckpointContext, EncryptionKey, KeyKind, OutputContext, public_key_from_bytes, unwrap_key,
                                    wrap_key)
from llmos_chain.datasets import grant_context, latest_grant
from llmos_chain.errors import ChainError, IntegrityError, LlmosError, SealedDataError, TransientError, WorkerError
from worker import data as data_mod
from worker import models, train
from worker.distributed import RayOptions
from llmos_chain.net import FetchError, FetchPolicy
from llmos_chain.recipe import fetch_recipe

log = logging.getLogger("llmos.worker")

Report = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class JobSpec:
    """What the chain says about a job (state from `getJob`, terms from `JobPosted`)."""

    job_id: int
    client: str
    worker: str
    state: JobState
    dataset_id: int
    base_model_hash: bytes
    recipe_hash: bytes
    recipe_uri: str
    client_key: bytes
    client_key_kind: KeyKind
    gpu_count: int = 1  # the job's demand: the ranks of a multi-node run


@dataclass
class RunResult:
    job_id: int
    attestation: Attestation
    signature: bytes
    bundle: Path
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


#: Sealed checkpoints one job may keep (bytes): past it only every k-th record keeps one, so that full fine-tuning of a
#: large model stays practical (a replay then starts from the nearest kept checkpoint).
CHECKPOINT_BUDGET_BYTES = 4 << 30


class SealedCheckpoints:
    """The trainer's checkpoints, each sealed to the job's checkpoint key as it is made (plaintext never on disk).

    Record k keeps one when (k - 1) is a multiple of `every`; `every` is set at the first checkpoint from its size so
    that all of them fit the budget. The commitment a record carries is the BLAKE3 hash of the sealed file."""

    def __init__(self, directory: Path, key: bytes, records: int, budget: int = CHECKPOINT_BUDGET_BYTES) -> None:
        self.directory, self.key, self.records, self.budget = directory, key, max(1, records), budget
        self.every = 1
        self.sizes: list[int] = []
        directory.mkdir(parents=True, exist_ok=True)

    def wanted(self, record: int) -> bool:
        return (record - 1) % self.every == 0

    def put(self, record: int, blob: bytes) -> str:
        if record == 1:
            self.every = max(1, -(-len(blob) * self.records // self.budget))
        sealed, _ = stream.seal_bytes(blob, self.key)
        (self.directory / f"{record}.sealed").write_bytes(sealed)
        self.sizes.append(len(sealed))
        return blake3.blake3(sealed).hexdigest()


def checkpoint_sink(suite: Suite, job_id: int, directory: Path, records: int) -> tuple[SealedCheckpoints, bytes] | None:
    """A sink sealing this job's checkpoints to the market's arbiter key, and that key's grant to the arbiter; None
    when the market has no arbiter key (then a dispute replays from the base model, through the whole job)."""
    key = arbiter_key(suite)
    if key is None:
        return None
    public_key_from_bytes(key.kind, key.public)
    data_key = stream.new_data_key()
    verifier = str(call(suite.market.functions.arbiter()))
    wrapped = wrap_key(data_key, key.kind, key.public, CheckpointContext(int(suite.w3.eth.chain_id), suite.market.address, job_id, verifier))
    return SealedCheckpoints(directory, data_key, records), wrapped


def read_job(suite: Suite, job_id: int) -> JobSpec:
    """The job's record and terms, and the client's output key, checked to be a usable public key before any work."""
    view = get_job(suite, job_id)
    key = client_key(suite, view.client_key_id)
    public_key_from_bytes(key.kind, key.public)  # raises SealedDataError for a key no output could be sealed to
    return JobSpec(job_id, view.client, view.worker, view.state, view.dataset_id, view.base_model_hash,
                   view.recipe_hash, view.recipe_uri, key.public, key.kind, view.gpu_count)


def _chain_time(suite: Suite) -> int:
    # The chain's clock, not the host's: the attested times must lie between the grant's block and the block that
    # takes the result (the audit checks both), and a host clock may run behind or ahead of the chain's.
    return int(suite.w3.eth.get_block("latest")["timestamp"])


def run_job(
    suite: Suite,
    job_id: int,
    signer: LocalAccount,
    enc_key: EncryptionKey,
    results_dir: Path,
    work_dir: Path,
    report: Report | None = None,
    policy: FetchPolicy | None = None,
    ray: RayOptions | None = None,
) -> RunResult:
    """Run one assigned, granted job and return its signed attestation; raises a WorkerError on failure.

    With `ray`, the training runs data-parallel over the Ray cluster, one rank per slot of the job's demand
    (`worker/distributed.py`); this process still unwraps the grant and signs, and the attestation means the same."""

    begun = time.perf_counter()
    marks: list[tuple[str, float]] = []  # (phase, when it began): the benchmark reads each phase's share of the run

    def step(name: str, **info: Any) -> None:
        log.info("job %s: %s %s", job_id, name, info or "")
        if name != "progress":
            marks.append((name, time.perf_counter()))
        if report is not None:
            report(name, info)

    timings: dict[str, float] = {}
    plaintext: bytearray | None = None
    started = _chain_time(suite)
    try:
        try:
            job = read_job(suite, job_id)
        except SealedDataError as exc:
            error = IntegrityError(f"the client's output key is unusable: {exc}")
            error.reason = 3
            raise error from None
        # What the node says about the job may be behind (a lagging backend) or reorged away: the coordinator saw it
        # Running. Refusing to run is never the job's failure, so it is never reported on chain; the coordinator tries
        # again while its own view says Running.
        if job.worker.lower() != signer.address.lower():
            raise TransientError(f"job {job_id} is assigned to {job.worker}, not to this worker ({signer.address}) on this node")
        if job.state is not JobState.RUNNING:
            raise TransientError(f"job {job_id} is {job.state.name.lower()}, not running, on this node (has the owner granted access?)")
        step("recipe", uri=job.recipe_uri)
        policy = policy or FetchPolicy()
        try:
            recipe = fetch_recipe(job.recipe_uri, job.recipe_hash, policy=policy)
        except FetchError as exc:  # transient: not the job's fault, so never a failure report
            raise TransientError(f"the recipe could not be fetched now: {exc}") from None

        record = call(suite.datasets.functions.getDataset(job.dataset_id))
        size, content_root, cipher_hash, uri = int(record[1]), bytes(record[2]), bytes(record[3]), str(record[4])
        if ray is not None:
            att, signature, bundle, metrics = _run_on_ray(suite, job, recipe, signer, enc_key, results_dir, policy, ray,
                                                          (size, content_root, cipher_hash, uri), started, step, timings)
            timings["total_s"] = marks[-1][1] - begun
            return RunResult(job_id, att, signature, bundle, metrics, timings)
        step("fetch", uri=uri)
        t = time.perf_counter()
        try:
            sealed_path = fetch(uri, work_dir / "fetch", cipher_hash, policy=policy, timeout=policy.timeout_s, plaintext_size=size)
        except SealedDataError as exc:
            raise IntegrityError(str(exc)) from None
        step("unwrap")
        if not call(suite.market.functions.canRead(job_id, signer.address)):
            raise TransientError(f"this node shows no running grant of job {job_id} for {signer.address} (lagging or reorged)")
        try:
            grant = latest_grant(suite, job_id, suite.deployment.start_block)
        except SealedDataError as exc:  # the node's logs lack the grant its state shows: a lagging backend
            raise TransientError(str(exc)) from None
        # The attested start may not precede the grant's block (the audit checks it): a lagging backend's "latest"
        # can be older than the grant this worker just read.
        started = max(started, int(suite.w3.eth.get_block(int(grant["blockNumber"]))["timestamp"]))
        try:
            data_key = unwrap_key(bytes(grant["wrappedKey"]), enc_key, grant_context(suite, job.dataset_id, job_id, signer.address))
        except SealedDataError as exc:  # the grant is there and does not open with our key: the owner's fault
            error = IntegrityError(str(exc))
            error.reason = 3
            raise error from None
        step("decrypt")
        try:
            with stream.SealedFile.open(sealed_path) as sealed:
                plaintext = stream.open_to_memory(sealed, data_key, content_root)
        except SealedDataError as exc:
            raise IntegrityError(str(exc)) from None
        timings["decrypt_s"] = time.perf_counter() - t

        step("parse")
        dataset = data_mod.parse(bytes(plaintext), recipe)
        train_set, eval_set = data_mod.split(dataset, recipe.eval_fraction, recipe.hyper.seed)
        step("model", base=recipe.base_model.model_dump(exclude_none=True))
        loaded = models.load(recipe, len(dataset.label_names) if dataset.label_names else None, job.base_model_hash)
        train_b = train.encode(train_set, loaded, recipe.hyper.max_length)
        eval_b = train.encode(eval_set, loaded, recipe.hyper.max_length)
        total_steps = recipe.hyper.total_steps(len(train_set))
        ckpt_dir = work_dir / "checkpoints" / str(job_id)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        try:
            sink = checkpoint_sink(suite, job_id, ckpt_dir, -(-total_steps // recipe.hyper.trajectory_every))
        except SealedDataError:  # an arbiter key no checkpoint can be sealed to: none kept (a replay starts at step 0)
            sink = None
        step("train", steps=recipe.hyper.steps, examples=len(train_set), checkpoints=sink is not None)
        every = max(1, recipe.hyper.steps // 10)
        result = train.train(loaded, recipe, train_b, eval_b,
                             on_step=lambda s, loss: step("progress", step=s, loss=round(loss, 4)) if s % every == 0 else None,
                             label_names=dataset.label_names, checkpoints=sink[0] if sink else None)
        timings["train_s"] = result.train_seconds
        timings["step_seconds"] = result.step_seconds  # type: ignore[assignment]
        timings["step_tokens"] = result.step_tokens  # type: ignore[assignment]
        step("evaluated", metric=result.metric_name, before=result.metric_before, after=result.metric_after)

        t = time.perf_counter()
        out_key = stream.new_data_key()
        sealed_output, _ = stream.seal_bytes(result.output, out_key)
        context = OutputContext(int(suite.w3.eth.chain_id), suite.market.address, job_id, job.client)
        wrapped = wrap_key(out_key, job.client_key_kind, job.client_key, context)
        timings["seal_s"] = time.perf_counter() - t

        metrics = {
            # the hash of the trained weights before sealing: identical for identical inputs on CPU
            "weights_hash": "0x" + blake3.blake3(result.output).hexdigest(),
            # the trainable weights' hash after the last step: the trajectory's last record, and what the output's
            # weights hash to once loaded on the base model (the client audit checks both)
            "final_trainable_hash": result.trajectory[-1].weights_hash if result.trajectory else "",
            "metric": result.metric_name, "before": result.metric_before, "after": result.metric_after,
            "higher_is_better": result.higher_is_better, "steps": result.steps, "train_tokens": result.train_tokens,
            "train_examples": len(train_set), "eval_examples": len(eval_set), "device": result.device,
        }
        metrics_bytes = json.dumps(metrics, sort_keys=True, separators=(",", ":")).encode()
        att = Attestation(
            job_id=job_id, worker=signer.address, dataset_root=content_root, base_model_hash=job.base_model_hash,
            recipe_hash=job.recipe_hash, output_hash=blake3.blake3(sealed_output).digest(),
            metrics_hash=blake3.blake3(metrics_bytes).digest(), trajectory_root=result.trajectory_root,
            start_time=started, end_time=max(started, _chain_time(suite)),
        )
        signature = sign(att, signer, int(suite.w3.eth.chain_id), suite.market.address)
        bundle = _write_bundle(results_dir / str(job_id), sealed_output, wrapped, metrics_bytes, result, att, signature,
                               (ckpt_dir, sink[1]) if sink else None)
        step("attested", output_hash="0x" + att.output_hash.hex())
        timings["total_s"] = marks[-1][1] - begun
        # each phase's seconds, named by the step that began it: "start" (reading the job) … "evaluated" (seal, attest)
        edges = [("start", begun), *marks]
        timings["phases"] = {name: round(edges[i + 1][1] - t, 6) for i, (name, t) in enumerate(edges[:-1])}  # type: ignore[assignment]
        return RunResult(job_id, att, signature, bundle, metrics, timings)
    except WorkerError:
        raise
    except (ChainError, OSError, Web3Exception) as exc:  # the node or the host, not the job: run again later
        raise TransientError(f"{type(exc).__name__}: {exc}") from None
    except LlmosError as exc:
        raise WorkerError(str(exc)) from None
    finally:
        if plaintext is not None:
            plaintext[:] = bytes(len(plaintext))


def _unwrap_grant(suite: Suite, job: JobSpec, signer: LocalAccount, enc_key: EncryptionKey) -> tuple[bytes, int]:
    """The data key from the owner's latest grant to this worker, and the grant's block."""
    if not call(suite.market.functions.canRead(job.job_id, signer.address)):
        raise TransientError(f"this node shows no running grant of job {job.job_id} for {signer.address} (lagging or reorged)")
    try:
        grant = latest_grant(suite, job.job_id, suite.deployment.start_block)
    except SealedDataError as exc:  # the node's logs lack the grant its state shows: a lagging backend
        raise TransientError(str(exc)) from None
    try:
        data_key = unwrap_key(bytes(grant["wrappedKey"]), enc_key, grant_context(suite, job.dataset_id, job.job_id, signer.address))
    except SealedDataError as exc:  # the grant is there and does not open with our key: the owner's fault
        error = IntegrityError(str(exc))
        error.reason = 3
        raise error from None
    return data_key, int(grant["blockNumber"])


def _run_on_ray(suite: Suite, job: JobSpec, recipe: Any, signer: LocalAccount, enc_key: EncryptionKey, results_dir: Path,
                policy: FetchPolicy, options: RayOptions, dataset: tuple[int, bytes, bytes, str], started: int,
                step: Callable[..., None], timings: dict[str, Any]) -> tuple[Attestation, bytes, Path, dict[str, Any]]:
    """The job trained over the Ray cluster; this process unwraps the grant, attests and signs, as on one host."""
    from worker.distributed import ShardedJob, train_on_ray

    size, content_root, cipher_hash, uri = dataset
    step("unwrap")
    data_key, grant_block = _unwrap_grant(suite, job, signer, enc_key)
    started = max(started, int(suite.w3.eth.get_block(grant_block)["timestamp"]))
    context = OutputContext(int(suite.w3.eth.chain_id), suite.market.address, job.job_id, job.client)
    sharded = ShardedJob(job.job_id, recipe.canonical_bytes(), uri, cipher_hash, size, content_root, job.base_model_hash,
                         job.client_key, job.client_key_kind, context, policy)
    step("train", ranks=job.gpu_count, address=options.address)
    run = train_on_ray(sharded, data_key, job.gpu_count, options, on_event=step)
    result = run.result
    step("evaluated", metric=result.metric_name, before=result.metric_before, after=result.metric_after, placement=run.placement)
    timings.update(run.timings)
    timings.update({"startup_s": run.startup_s, "ranks": run.ranks, "nodes": run.nodes})
    timings["placement"] = run.placement  # type: ignore[assignment]
    metrics = {
        "weights_hash": run.weights_hash,
        "final_trainable_hash": result.trajectory[-1].weights_hash if result.trajectory else "",
        "metric": result.metric_name, "before": result.metric_before, "after": result.metric_after,
        "higher_is_better": result.higher_is_better, "steps": result.steps, "train_tokens": result.train_tokens,
        "train_examples": run.train_examples, "eval_examples": run.eval_examples, "device": result.device,
        "ranks": run.ranks,
    }
    metrics_bytes = json.dumps(metrics, sort_keys=True, separators=(",", ":")).encode()
    att = Attestation(
        job_id=job.job_id, worker=signer.address, dataset_root=content_root, base_model_hash=job.base_model_hash,
        recipe_hash=job.recipe_hash, output_hash=blake3.blake3(run.sealed_output).digest(),
        metrics_hash=blake3.blake3(metrics_bytes).digest(), trajectory_root=result.trajectory_root,
        start_time=started, end_time=max(started, _chain_time(suite)),
    )
    signature = sign(att, signer, int(suite.w3.eth.chain_id), suite.market.address)
    bundle = _write_bundle(results_dir / str(job.job_id), run.sealed_output, run.wrapped_output_key, metrics_bytes, result, att, signature)
    step("attested", output_hash="0x" + att.output_hash.hex())
    return att, signature, bundle, metrics


def _write_bundle(directory: Path, sealed_output: bytes, wrapped: bytes, metrics: bytes, result: train.TrainResult,
                  att: Attestation, signature: bytes, checkpoints: tuple[Path, bytes] | None = None) -> Path:
    """The result store entry: sealed output, its wrapped key, metrics, trajectory records, the attestation, and the
    sealed checkpoints with their key wrapped to the arbiter (`checkpoints/K.sealed`, `checkpoints.key`)."""
    directory.mkdir(parents=True, exist_ok=True)
    if checkpoints is not None:
        source, ckpt_key = checkpoints
        target = directory / "checkpoints"
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(source), str(target))
        (directory / "checkpoints.key").write_bytes(ckpt_key)
    (directory / "output.sealed").write_bytes(sealed_output)
    (directory / "output.key").write_bytes(wrapped)
    (directory / "metrics.json").write_bytes(metrics)
    (directory / "trajectory.jsonl").write_bytes(b"".join(r.encode() + b"\n" for r in result.trajectory))
    (directory / "attestation.json").write_text(json.dumps({**att.to_json(), "signature": "0x" + signature.hex()}, indent=1) + "\n")
    return directory


def failure_report(error: WorkerError) -> dict[str, Any]:
    """What the coordinator posts with `reportFailure`: the reason code and the hash of a public detail.

    The message stays local (it names local paths, hashes of local files and values from the data); what goes on
    chain hashes only the reason code and the error's class, which anyone can reproduce and which leak nothing."""
    message = str(error)
    public = f"llmos-failure/1:{error.reason}:{type(error).__name__}"
    return {"reason": error.reason, "data_fault": error.data_fault, "transient": error.transient, "error": type(error).__name__,
            "message": message, "public_detail": public, "details_hash": "0x" + blake3.blake3(public.encode()).hexdigest()}
