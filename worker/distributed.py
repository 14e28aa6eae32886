"""One job trained data-parallel over a Ray cluster: one rank per slot (a GPU, or a CPU slot on CPU hosts), torch DDP
underneath (NCCL on GPUs, gloo on CPU), our own Ray actors around `torch.distributed` (no Ray Train: each rank's
life, its timeouts and what crosses the wire stay in this file).

Who holds what:
- the driver (`python -m worker run --ray-address …`, started by the coordinator's Ray executor on the coordinator's
  host) holds the worker's signing key and its registered HPKE key; it unwraps the owner's grant (as a one-host run
  does), and signs the attestation. Neither key leaves its process.
- each rank (a Ray actor on some node) makes an ephemeral HPKE key pair; the driver wraps the data key to it
  (`RankContext`: job, rank, a fresh session). The rank fetches the sealed dataset itself, checks its cipher hash,
  decrypts in memory and checks the content root, then trains on its shard of every global batch.
- rank 0 evaluates, builds the trajectory, exports the weights and seals them to the client; only the sealed output,
  the client's wrapped key, hashes and figures go back through Ray. No data key and no plaintext ever enter Ray's
  object store (it spills to disk; its transport is unencrypted by default).

Faults: every wait is bounded. A lost rank (node gone, process killed) or a collective that fails ends the run in a
TransientError (the coordinator runs the job again on what capacity remains, or lets it be reported by the usual
rules); all ranks are killed and nothing is returned, so no partial result is ever written or submitted.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import blake3

from llmos_chain.crypto import stream
from llmos_chain.crypto.fetch import fetch
from llmos_chain.crypto.keys import EncryptionKey, KeyKind, OutputContext, RankContext, unwrap_key, wrap_key
from llmos_chain.errors import (AllocationError, ConfigError, IntegrityError, LlmosError, SealedDataError, TransientError,
                                WorkerError)
from llmos_chain.market.placement import nodes_used, place_ranks
from llmos_chain.net import FetchPolicy
from llmos_chain.recipe import Recipe


@dataclass(frozen=True)
class ShardedJob:
    """What every rank needs to train its shard; nothing in it is secret."""

    job_id: int
    recipe: bytes  # the recipe's canonical bytes (already checked against the on-chain hash by the driver)
    dataset_uri: str
    cipher_hash: bytes
    plaintext_size: int
    content_root: bytes
    base_model_hash: bytes | None
    client_key: bytes
    client_key_kind: KeyKind
    output_context: OutputContext
    policy: FetchPolicy = field(default_factory=FetchPolicy)


@dataclass
class RayOptions:
    """How the driver reaches the cluster and bounds each wait."""

    address: str = "auto"  # "auto" (a cluster on this host), "ray://host:10001" (Ray Client), "local" (start one here)
    resource: str = "auto"  # "GPU", "CPU" or "auto" (GPU when the cluster has any)
    start_timeout_s: float = 180.0  # every rank up, its key made and its endpoint known
    collective_timeout_s: float = 300.0  # one torch.distributed collective (gloo/NCCL) at most
    run_timeout_s: float = 3600.0  # the whole training (the coordinator's executor also stops the driver at its limit)
    threads: int = 1  # torch threads per rank on CPU

    def __post_init__(self) -> None:
        if self.resource not in ("auto", "CPU", "GPU"):
            raise ConfigError(f"the Ray resource is GPU, CPU or auto, not {self.resource!r}")


@dataclass
class RankReport:
    """What a rank sends back: figures for every rank; the sealed result for rank 0 only."""

    rank: int
    node: str
    step_tokens: list[int]
    step_seconds: list[float]
    first_step_at: float  # time.time() when the rank began its first step
    result: Any = None  # rank 0: the TrainResult with its plaintext output removed
    sealed_output: bytes = b""
    wrapped_output_key: bytes = b""
    weights_hash: str = ""
    train_examples: int = 0
    eval_examples: int = 0
    decrypt_s: float = 0.0
    seal_s: float = 0.0


@dataclass
class DistributedResult:
    result: Any  # worker.train.TrainResult, output removed (the plaintext weights never leave rank 0)
    sealed_output: bytes
    wrapped_output_key: bytes
    weights_hash: str
    train_examples: int
    eval_examples: int
    ranks: int
    placement: list[str]  # the node of each rank
    startup_s: float  # from the call until rank 0 began its first step (Ray, process start, fetch, decrypt, load)
    tokens: int  # every rank's training tokens
    steady_tokens: int  # after the first WARMUP_STEPS steps
    steady_seconds: float  # rank 0's time for those steps
    timings: dict[str, float]

    @property
    def nodes(self) -> int:
        return nodes_used(self.placement)


WARMUP_STEPS = 3


class Rank:
    """One rank of a job (a Ray actor; `_actor_class` makes it remote). Holds its ephemeral HPKE key for its life."""

    def __init__(self, rank: int, world: int, threads: int) -> None:
        import torch

        self.rank, self.world = rank, world
        self._key = EncryptionKey.generate()
        if not torch.cuda.is_available():
            torch.set_num_threads(threads)

    def hello(self) -> tuple[bytes, str, str, int]:
        """This rank's ephemeral public key, its node id, and (for rank 0) an address for the process group."""
        import ray

        ip = ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        return self._key.public_bytes(), ray.get_runtime_context().get_node_id(), ip, port

    def run(self, job: ShardedJob, wrapped_data_key: bytes, session: bytes, master: tuple[str, int], collective_timeout_s: float) -> RankReport:
        import torch
        import torch.distributed as dist

        from worker import data as data_mod
        from worker import models, train

        import ray

        node = ray.get_runtime_context().get_node_id()
        data_key = unwrap_key(wrapped_data_key, self._key, RankContext(job.job_id, self.rank, session))
        recipe = Recipe.parse(job.recipe.decode())
        plaintext: bytearray | None = None
        first: list[float] = []
        try:
            t = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"llmos-rank{self.rank}-") as scratch:
                try:
                    sealed_path = fetch(job.dataset_uri, Path(scratch), job.cipher_hash, policy=job.policy,
                                        timeout=job.policy.timeout_s, plaintext_size=job.plaintext_size)
                    with stream.SealedFile.open(sealed_path) as sealed:
                        plaintext = stream.open_to_memory(sealed, data_key, job.content_root)
                except SealedDataError as exc:
                    raise IntegrityError(str(exc)) from None
            decrypt_s = time.perf_counter() - t
            dataset = data_mod.parse(bytes(plaintext), recipe)
            train_set, eval_set = data_mod.split(dataset, recipe.eval_fraction, recipe.hyper.seed)
            loaded = models.load(recipe, len(dataset.label_names) if dataset.label_names else None, job.base_model_hash)
            train_b = train.encode(train_set, loaded, recipe.hyper.max_length)
            eval_b = train.encode(eval_set, loaded, recipe.hyper.max_length)
            parallel = None
            if self.world > 1:
                cuda = torch.cuda.is_available()
                dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://{master[0]}:{master[1]}",
                                        rank=self.rank, world_size=self.world, timeout=timedelta(seconds=collective_timeout_s))

                def mean(value: float) -> float:
                    tensor = torch.tensor([value], dtype=torch.float64, device="cuda" if cuda else "cpu")
                    dist.all_reduce(tensor)
                    return float(tensor.item()) / self.world

                def wrap(model: torch.nn.Module) -> torch.nn.Module:
                    from torch.nn.parallel import DistributedDataParallel

                    return DistributedDataParallel(model, device_ids=[0] if cuda else None)

                parallel = train.Parallel(self.rank, self.world, wrap, mean, on_first_step=lambda: first.append(time.time()))
            result = train.train(loaded, recipe, train_b, eval_b, label_names=dataset.label_names, parallel=parallel)
            if parallel is None:
                first.append(time.time() - result.train_seconds)
            report = RankReport(self.rank, node, result.step_tokens, result.step_seconds, first[0],
                                train_examples=len(train_set), eval_examples=len(eval_set), decrypt_s=decrypt_s)
            if self.rank == 0:
                t = time.perf_counter()
                out_key = stream.new_data_key()
                report.sealed_output, _ = stream.seal_bytes(result.output, out_key)
                report.wrapped_output_key = wrap_key(out_key, job.client_key_kind, job.client_key, job.output_context)
                report.weights_hash = "0x" + blake3.blake3(result.output).hexdigest()
                report.seal_s = time.perf_counter() - t
                result.output = b""  # the plaintext weights stay here
                report.result = result
            return report
        finally:
            if plaintext is not None:
                plaintext[:] = bytes(len(plaintext))
            if self.world > 1 and dist.is_initialized():
                dist.destroy_process_group()


def _actor_class(ray: Any) -> Any:
    return ray.remote(max_restarts=0, max_task_retries=0)(Rank)


def connect(address: str) -> Any:
    """Ray, connected to the provider's cluster (`local`: a fresh one on this host)."""
    import ray

    if ray.is_initialized():
        return ray
    if address == "local":  # a private cluster of this process: no token to manage
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(address=None if address == "local" else address, namespace="llmos", log_to_driver=False,
                 include_dashboard=False if address == "local" else None, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise TransientError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    return ray


def free_slots(ray: Any, resource: str) -> tuple[str, dict[str, float]]:
    """The resource ranks take (GPU when the cluster has GPUs, unless told) and each live node's free amount of it."""
    from ray._private.state import available_resources_per_node  # per-node free resources; no public API has it

    totals = {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")}
    if resource == "auto":
        resource = "GPU" if any(r.get("GPU", 0) > 0 for r in totals.values()) else "CPU"
    free = {node: float(res.get(resource, 0.0)) for node, res in available_resources_per_node().items() if node in totals}
    return resource, free


def train_on_ray(job: ShardedJob, data_key: bytes, ranks: int, options: RayOptions,
                 placement: list[str] | None = None, on_event: Callable[..., None] | None = None) -> DistributedResult:
    """Train `job` over `ranks` ranks of the Ray cluster; rank 0's sealed result. Raises a WorkerError: the job's own
    (bad data, recipe or model: every rank meets it alike) or a TransientError (capacity, a lost rank, a timeout)."""
    begun = time.time()
    ray = connect(options.address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    resource, placement = _place(ray, options, ranks, placement)
    actor = _actor_class(ray)
    need = {"num_gpus": 1, "num_cpus": 0} if resource == "GPU" else {"num_cpus": 1}
    actors = [actor.options(**need, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(r, ranks, options.threads)
              for r, node in enumerate(placement)]
    try:
        hellos = _gather(ray, [a.hello.remote() for a in actors], options.start_timeout_s, "starting the ranks")
        if on_event is not None:
            on_event("ranks", placement=[h[1] for h in hellos])
        session = os.urandom(16)
        master = (hellos[0][2], hellos[0][3])
        refs = [a.run.remote(job, wrap_key(data_key, KeyKind.X25519, hello[0], RankContext(job.job_id, r, session)), session,
                             master, options.collective_timeout_s)
                for r, (a, hello) in enumerate(zip(actors, hellos, strict=True))]
        reports: list[RankReport] = _gather(ray, refs, options.run_timeout_s, "training")
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
    head = reports[0]
    per_step = [sum(r.step_tokens[i] for r in reports) for i in range(len(head.step_tokens))]
    steady = per_step[WARMUP_STEPS:] if len(per_step) > WARMUP_STEPS else per_step
    steady_s = head.step_seconds[WARMUP_STEPS:] if len(head.step_seconds) > WARMUP_STEPS else head.step_seconds
    result = head.result
    result.train_tokens = sum(per_step)
    result.step_tokens = per_step
    timings = {"decrypt_s": max(r.decrypt_s for r in reports), "seal_s": head.seal_s, "train_s": result.train_seconds}
    return DistributedResult(result, head.sealed_output, head.wrapped_output_key, head.weights_hash, head.train_examples,
                             head.eval_examples, ranks, [r.node for r in reports], max(0.0, head.first_step_at - begun),
                             sum(per_step), sum(steady), sum(steady_s), timings)


def _place(ray: Any, options: RayOptions, ranks: int, placement: list[str] | None) -> tuple[str, list[str]]:
    """The ranks' nodes, once the cluster has the free slots (ranks of an ended run take a moment to release theirs);
    a TransientError if it has not within the start timeout: the cluster is smaller or busier than the job now."""
    end = time.monotonic() + options.start_timeout_s
    while True:
        resource, free = free_slots(ray, options.resource)
        if placement is not None:
            return resource, placement
        try:
            return resource, place_ranks(free, ranks)
        except AllocationError as exc:
            if time.monotonic() > end:
                raise TransientError(f"cannot place {ranks} ranks within {options.start_timeout_s:.0f} s: {exc}") from None
        time.sleep(0.5)


def _gather(ray: Any, refs: list[Any], timeout_s: float, what: str) -> list[Any]:
    """Every ref's value, or the first failure as a WorkerError, within `timeout_s` in all: never a hang."""
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError

    end = time.monotonic() + timeout_s
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, end - time.monotonic()))
        if not ready:
            raise TransientError(f"{what} took longer than {timeout_s:.0f} s (a rank lost, or the cluster full)")
        try:
            ray.get(ready[0], timeout=max(1.0, end - time.monotonic()))
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, WorkerError):
                raise cause from None  # the job's own failure: every rank meets it alike
            if isinstance(cause, LlmosError):
                raise WorkerError(str(cause)) from None
            raise TransientError(f"a rank failed while {what}: {type(cause).__name__ if cause else 'error'}: "
                                 f"{str(cause or exc).splitlines()[0][:300]}") from None
        except GetTimeoutError:
            raise TransientError(f"{what} took longer than {timeout_s:.0f} s") from None
        except RayError as exc:  # a rank's actor or node died
            raise TransientError(f"a rank was lost while {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    return [ray.get(r) for r in refs]

