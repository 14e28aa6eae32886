"""Verification by re-execution, the chain and file side (no torch): gather what a replay needs, run it in the worker
runtime (`python -m worker verify`), and read its verdict.

A verifier (the market's arbiter) needs: the owner's `VerifierGranted` data key for the job, wrapped to the arbiter's
key; the job's result bundle with its trajectory (checked against the attested root) and its sealed checkpoints
(their key wrapped to the arbiter in `checkpoints.key`); the recipe and the sealed dataset. Keys go to the replay
process over its stdin only. What the worker had to publish and did not (a bundle whose trajectory is not the attested
one) is a finding against it; what the verifier lacks (no grant, a node error) is a VerificationError and says
nothing about the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from llmos_chain.chain.contracts import call
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.market import JobState, get_job
from llmos_chain.crypto import merkle
from llmos_chain.crypto.keys import CheckpointContext, EncryptionKey, GrantContext, unwrap_key
from llmos_chain.errors import LlmosError, SealedDataError, VerificationError

#: `DisputeEvidence.interval` when no interval was replayed (the bundle itself was the finding).
NO_INTERVAL = 2**32 - 1


@dataclass
class Finding:
    """The outcome of a verification: agrees, or the interval that diverged and the hashes that show it."""

    job_id: int
    agrees: bool
    interval: int | None
    expected: str
    replayed: str
    detail: str
    replays: list[dict[str, Any]] = field(default_factory=list)
    intervals: int = 0
    setup_s: float = 0.0
    seconds: float = 0.0
    complete: bool = True  # False: asked for every interval, the time ran out first (what was replayed agrees)

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job_id, "agrees": self.agrees, "complete": self.complete, "diverging_interval": self.interval,
                "expected": self.expected,
                "replayed": self.replayed, "detail": self.detail, "intervals": self.intervals, "replay_count": len(self.replays),
                "replays": self.replays, "setup_s": round(self.setup_s, 4), "seconds": round(self.seconds, 4)}

    def report_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


def verifier_grant(suite: Suite, job_id: int) -> dict[str, Any] | None:
    """The latest `VerifierGranted` event of the job, if the owner granted."""
    try:
        logs = suite.market.events.VerifierGranted().get_logs(from_block=suite.deployment.start_block, argument_filters={"jobId": job_id})
    except Exception as exc:  # noqa: BLE001 (web3 raises several types for node trouble)
        raise VerificationError(f"could not read the verifier grants of job {job_id}: {exc}") from None
    return dict(logs[-1]["args"]) if logs else None


def _trajectory_finding(job_id: int, bundle: Path, attested_root: bytes) -> Finding | None:
    path = bundle / "trajectory.jsonl"
    raw = path.read_bytes() if path.is_file() else None
    if raw is None or merkle.root_of(line for line in raw.splitlines() if line) != attested_root:
        return Finding(job_id, False, None, "", "", "the published trajectory is missing or is not the attested one")
    return None


def prepare(suite: Suite, job_id: int, bundle: Path, key: EncryptionKey, work_dir: Path) -> tuple[dict[str, Any], Finding | None]:
    """The replay request for `python -m worker verify` (with the keys), or a finding when the bundle is the worker's fault.

    Raises VerificationError when the verifier cannot go on (no grant for this key, a key that does not open it)."""
    from llmos_chain.crypto.fetch import fetch
    from llmos_chain.net import FetchPolicy
    from llmos_chain.recipe import fetch_recipe

    view = get_job(suite, job_id)
    submitted = suite.market.events.ResultSubmitted().get_logs(from_block=suite.deployment.start_block, argument_filters={"jobId": job_id})
    if not submitted:
        raise VerificationError(f"job {job_id} has no submitted result to verify")
    attested_root = bytes(submitted[-1]["args"]["trajectoryRoot"])
    finding = _trajectory_finding(job_id, bundle, attested_root)
    if finding is not None:
        return {}, finding
    grant = verifier_grant(suite, job_id)
    if grant is None:
        raise VerificationError(f"the data owner has not granted job {job_id}'s data to the verifier (no VerifierGranted)")
    verifier = str(grant["verifier"])
    chain_id = int(suite.w3.eth.chain_id)
    try:
        data_key = unwrap_key(bytes(grant["wrappedKey"]), key, GrantContext(chain_id, suite.market.address, view.dataset_id, job_id, verifier))
    except SealedDataError as exc:
        raise VerificationError(f"the verifier grant does not open with this key: {exc}") from None
    ckpt_key: bytes | None = None
    if (bundle / "checkpoints.key").is_file():
        try:
            ckpt_key = unwrap_key((bundle / "checkpoints.key").read_bytes(), key, CheckpointContext(chain_id, suite.market.address, job_id, verifier))
        except SealedDataError:
            ckpt_key = None  # then every checkpoint is unusable: the replay says so at the interval that needs one
    policy = FetchPolicy()
    recipe = fetch_recipe(view.recipe_uri, view.recipe_hash, policy=policy)
    record = call(suite.datasets.functions.getDataset(view.dataset_id))
    size, content_root, cipher_hash, uri = int(record[1]), bytes(record[2]), bytes(record[3]), str(record[4])
    try:
        sealed = fetch(uri, work_dir, cipher_hash, policy=policy, plaintext_size=size)
    except SealedDataError as exc:
        raise VerificationError(f"the dataset could not be fetched and checked: {exc}") from None
    request = {"recipe": recipe.canonical_bytes().decode(), "base_model_hash": view.base_model_hash.hex(), "dataset": str(sealed),
               "content_root": content_root.hex(), "data_key": data_key.hex(), "bundle": str(bundle),
               "checkpoint_key": ckpt_key.hex() if ckpt_key else None}
    return request, None


def replay(job_id: int, request: dict[str, Any], intervals: list[int] | None = None, every: bool = False,
           timeout_s: float = 3600.0, threads: int | None = None,
           on_event: Callable[[dict[str, Any]], None] | None = None) -> Finding:
    """Run the replays in the worker runtime and read its verdict (a VerificationError when it could not verify)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "worker", "verify"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    import threading

    # the deadline is checked between lines; a replay that prints nothing is killed by this watchdog instead
    watchdog = threading.Timer(timeout_s, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        # with every interval asked, the replay itself stops in time (its verdict then says which it reached): a
        # tenth of the budget and 15 s are kept for starting the process, loading, and answering
        budget = max(1.0, timeout_s * 0.9 - 15.0)
        proc.stdin.write(json.dumps({**request, "intervals": intervals, "every": every, "budget_s": budget}) + "\n")
        proc.stdin.close()
        verdict: dict[str, Any] | None = None
        error: str | None = None
        deadline = time.monotonic() + timeout_s
        for line in proc.stdout:
            if time.monotonic() > deadline:
                raise VerificationError(f"the replay took longer than {timeout_s:.0f} s")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if on_event is not None:
                on_event(event)
            if event.get("event") == "verdict":
                verdict = event
            elif event.get("event") == "error":
                error = str(event.get("message"))
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise VerificationError(f"the replay took longer than {timeout_s:.0f} s") from None
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if verdict is None and time.perf_counter() - t0 >= timeout_s:
        raise VerificationError(f"the replay took longer than {timeout_s:.0f} s")
    if verdict is None:
        stderr = stderr[-2000:]
        raise VerificationError(error or f"the replay process ended without a verdict (exit {proc.returncode}): {stderr.strip()}")
    replays = list(verdict.get("replays") or [])
    diverging = verdict.get("diverging_interval")
    named = next((r for r in replays if not r["agrees"] and r["diverging"] == diverging), replays[-1] if replays else None)
    return Finding(job_id, bool(verdict["agrees"]), diverging, str(named["expected"]) if named else "",
                   str(named["replayed"]) if named else "", str(verdict.get("detail", "")), replays, int(verdict.get("intervals", 0)),
                   float(verdict.get("setup_s", 0.0)), time.perf_counter() - t0, bool(verdict.get("complete", True)))


def verify_job(suite: Suite, job_id: int, bundle: Path, key: EncryptionKey, work_dir: Path, intervals: list[int] | None = None,
               every: bool = False, timeout_s: float = 3600.0, threads: int | None = None,
               on_event: Callable[[dict[str, Any]], None] | None = None) -> Finding:
    """Everything `llmos verify` does once the bundle is local."""
    view = get_job(suite, job_id)
    if view.state is JobState.NONE:
        raise VerificationError(f"job {job_id} does not exist")
    try:
        request, finding = prepare(suite, job_id, bundle, key, work_dir)
    except VerificationError:
        raise
    except LlmosError as exc:
        raise VerificationError(str(exc)) from None
    if finding is not None:
        return finding
    return replay(job_id, request, intervals, every, timeout_s, threads, on_event)


def evidence_hash(value: str) -> bytes:
    """A weights hash (64 hex digits) as the 32 bytes `DisputeEvidence` records; zero when there is none."""
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raw = b""
    return raw if len(raw) == 32 else bytes(32)


def report_hash(finding: Finding) -> bytes:
    return blake3.blake3(finding.report_bytes()).digest()
