"""Rebuild one job's history from chain events and check every hash and signature.

Needs only an RPC endpoint and the deployment file; the result bundle (sealed output, metrics,
trajectory, attestation) and, for the data owner, the dataset's key add the checks that need them.
The attestation is rebuilt from chain data alone (job terms from `JobPosted`, dataset root from the
registry, result hashes from `ResultSubmitted`) and its EIP-712 digest compared with the one the
market recorded: that proves the worker attested to exactly the posted job and registered dataset.

Two audits:
- the **public audit** (`audit_job`, anyone): history, bindings and signatures from the chain; with the bundle, its
  files against the attested hashes, the metrics against their schema, the trajectory in canonical form and in
  agreement with the metrics and the recipe's steps, and the attested times against the grant and submission blocks;
- the **client audit** (`client_audit`, the client's key): all of that, plus the output decrypted, checked against
  the attested weights hash, loaded on the recipe's base model and run, and its trainable weights checked against
  the trajectory's last record. A client (or its agent) accepts only what passes the client audit.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import blake3
from eth_utils import to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmos_chain.attestation import Attestation, digest, recover
from llmos_chain.chain.contracts import call
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.market import ZERO_ADDRESS, JobTerms, get_job, worker_address
from llmos_chain.crypto import merkle, stream
from llmos_chain.crypto.fetch import fetch
from llmos_chain.crypto.keys import EncryptionKey, OutputContext, unwrap_key
from llmos_chain.errors import ChainError, ContractRevertError, DeploymentError, LlmosError
from llmos_chain.net import FetchError


def _transient(exc: LlmosError) -> bool:
    """A fault of the node or of a server that may answer later: never a verdict on the worker's result. The audit
    raises it instead of failing a check, so an agent does not dispute a good result because its node hiccuped."""
    if isinstance(exc, FetchError):
        return exc.transient
    return isinstance(exc, ChainError) and not isinstance(exc, (ContractRevertError, DeploymentError))

MARKET_EVENTS = ("JobPosted", "JobAssigned", "JobReopened", "AccessGranted", "ResultSubmitted", "FailureReported", "JobDisputed",
                 "DisputeResolved", "JobSettled", "JobRefunded", "JobCancelled", "JobExpired", "JobFailed", "VerifierGranted",
                 "DisputeEvidence")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class AuditReport:
    job_id: int
    state: str
    history: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(ok), detail))

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job_id, "state": self.state, "verdict": "pass" if self.passed else "fail",
                "checks": [asdict(c) for c in self.checks], "history": self.history}


#: Event arguments that are amounts of wei or token base units: JSON gives them as decimal strings (the CLI's
#: vocabulary; a uint256 does not fit a JSON reader's double).
AMOUNT_ARGS = frozenset({"amount", "refund", "bond", "slashed", "stake"})
#: The ids under the CLI's names (`job`, `dataset`), not the events' (`jobId`, `datasetId`).
RENAMED_ARGS = {"jobId": "job", "datasetId": "dataset"}


def history_row(name: str, log: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """One event as a JSON-ready row: name, block, tx and its arguments (bytes as hex, amounts as decimal strings)."""
    return {"event": name, "block": log["blockNumber"], "tx": "0x" + bytes(log["transactionHash"]).hex(),
            **{RENAMED_ARGS.get(k, k): _jsonable(v, k) for k, v in dict(log["args"]).items() if k not in skip}}


def _jsonable(value: Any, key: str = "") -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, int) and not isinstance(value, bool) and key in AMOUNT_ARGS:
        return str(value)
    if hasattr(value, "keys"):  # a struct argument (JobPosted's terms)
        return {RENAMED_ARGS.get(k, k): _jsonable(v, k) for k, v in dict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def job_events(suite: Suite, job_id: int) -> list[tuple[str, Any]]:
    """Every market event naming `job_id`, in chain order, up to the node's head.

    One `eth_getLogs` (every market event has the job id as its first topic) asked in one JSON-RPC batch with the head
    block, so both come from the same backend: a backend that lags behind the head it reported answers null for the
    block and the audit stops with NodeLaggingError (try again), instead of judging a job on a partial history."""
    from eth_utils import event_abi_to_log_topic
    from web3._utils.events import get_event_data
    from web3.exceptions import BlockNotFound, Web3TypeError

    from llmos_chain.errors import NodeLaggingError

    w3 = suite.w3
    start = suite.deployment.start_block
    head = int(w3.eth.block_number)
    abis = {bytes(event_abi_to_log_topic(item)): item for item in suite.market.abi
            if item["type"] == "event" and item["name"] in MARKET_EVENTS}
    query = {"address": suite.market.address, "fromBlock": start, "toBlock": head,
             "topics": [None, "0x" + job_id.to_bytes(32, "big").hex()]}
    try:
        try:
            with w3.batch_requests() as batch:
                batch.add(w3.eth.get_logs(query))  # type: ignore[arg-type]
                batch.add(w3.eth.get_block(head))
                logs, _ = batch.execute()
        except Web3TypeError:  # an in-process chain: one node, nothing can lag
            logs = w3.eth.get_logs(query)  # type: ignore[arg-type]
    except BlockNotFound:
        raise NodeLaggingError(f"the node's backend lacks block {head}, the head it reported: ask again") from None
    found = []
    for raw in logs:
        abi = abis.get(bytes(raw["topics"][0])) if raw["topics"] else None
        if abi is not None:
            found.append((str(abi["name"]), get_event_data(w3.codec, abi, raw)))
    return sorted(found, key=lambda e: (e[1]["blockNumber"], e[1]["logIndex"]))


def _signer_at(suite: Suite, worker_id: int, block: int) -> str | None:
    """The signer registered for worker id `worker_id` as of `block`, from WorkerRegistered / WorkerUpdated events."""
    start = suite.deployment.start_block
    changes = []
    for name in ("WorkerRegistered", "WorkerUpdated"):
        for log in getattr(suite.workers.events, name)().get_logs(from_block=start, to_block=block, argument_filters={"id": worker_id}):
            changes.append((log["blockNumber"], log["logIndex"], log["args"]["signer"]))
    return max(changes)[2] if changes else None


def audit_job(suite: Suite, job_id: int, bundle: Path | None = None, data_key: bytes | None = None) -> AuditReport:
    """Every check this auditor can make for `job_id` (more with the bundle, and with the dataset's key)."""
    job = get_job(suite, job_id)
    report = AuditReport(job_id, job.state.name.lower())
    events = job_events(suite, job_id)
    report.history = [history_row(name, log) for name, log in events]
    by_name: dict[str, list[Any]] = {}
    for name, log in events:
        by_name.setdefault(name, []).append(log)

    posted = [p for p in by_name.get("JobPosted", []) if JobTerms.from_chain(p["args"]["terms"]).hash == job.terms.hash]
    report.check("posted", len(posted) == 1 and posted[0]["args"]["terms"]["amount"] == job.escrow
                 and posted[0]["args"]["client"] == job.client,
                 f"escrow {job.escrow} by {job.client}; terms hash to the job's record" if posted else "no JobPosted event matches the job's record")
    if not posted:
        return report
    terms = posted[0]["args"]
    token = terms["terms"]["token"]
    report.check("escrow currency", token == job.token, "ETH" if token == ZERO_ADDRESS else f"ERC-20 {token}")

    assigned = by_name.get("JobAssigned", [])
    worker_id = int(assigned[-1]["args"]["workerId"]) if assigned else None
    worker = worker_address(suite, worker_id) if worker_id is not None else None
    operator = assigned[-1]["args"]["operator"] if assigned else None

    # when the assigned worker could read the dataset for this job (the market lets only the owner grant, only
    # to the assigned worker)
    grants = by_name.get("AccessGranted", [])
    result = by_name.get("ResultSubmitted", [])
    if result:
        submitted_at = (result[-1]["blockNumber"], result[-1]["logIndex"])
        late = [g for g in grants if (g["blockNumber"], g["logIndex"]) > submitted_at]
        report.check("no grant after the result", not late,
                     "none" if not late else f"grant in block {late[0]['blockNumber']}, after the result")
        early = [g for g in grants if (g["blockNumber"], g["logIndex"]) < submitted_at]
        report.check("grant before the work", bool(early), "the worker held a grant before submitting" if early else "no grant preceded the result")

        ev = result[-1]["args"]
        record = call(suite.datasets.functions.getDataset(job.dataset_id))
        rebuilt = Attestation(
            job_id=job_id, worker=ev["worker"], dataset_root=bytes(record[2]), base_model_hash=bytes(terms["baseModelHash"]),
            recipe_hash=bytes(terms["recipeHash"]), output_hash=bytes(ev["outputHash"]), metrics_hash=bytes(ev["metricsHash"]),
            trajectory_root=bytes(ev["trajectoryRoot"]), start_time=int(ev["startTime"]), end_time=int(ev["endTime"]),
        )
        chain_id = int(suite.w3.eth.chain_id)
        rebuilt_digest = digest(rebuilt, chain_id, suite.market.address)
        report.check("attestation binds the posted job and dataset", rebuilt_digest == bytes(ev["digest"]),
                     "digest rebuilt from JobPosted, the dataset registry and ResultSubmitted matches the market's record"
                     if rebuilt_digest == bytes(ev["digest"]) else "the recorded digest is not over this job's model, recipe and dataset root")
        report.check("attested by the assigned worker", ev["worker"] == worker, f"worker {ev['worker']}")
        granted_at = _block_time(suite, int(early[-1]["blockNumber"])) if early else None
        submitted_time = _block_time(suite, int(result[-1]["blockNumber"]))
        start, end = int(ev["startTime"]), int(ev["endTime"])
        plausible = granted_at is not None and granted_at <= start <= end <= submitted_time
        report.check("attested times", plausible,
                     f"started {start}, ended {end}, between the grant ({granted_at}) and the submission ({submitted_time})" if plausible
                     else f"attested {start}..{end} does not lie between the grant ({granted_at}) and the submission ({submitted_time})")
        registered = _signer_at(suite, worker_id, int(result[-1]["blockNumber"])) if worker_id is not None else None
        report.check("signer at submission", registered is not None and registered == ev["signer"],
                     f"the market took {ev['signer']}, the registry's signer then" if registered == ev["signer"]
                     else f"the market logged {ev['signer']}, the registry names {registered}")
        if bundle is not None:
            _check_bundle(report, suite, bundle, rebuilt, rebuilt_digest, str(ev["signer"]), int(result[-1]["blockNumber"]))
            _check_contents(report, bundle, rebuilt, str(terms["recipeURI"]))

    evidence, resolved = by_name.get("DisputeEvidence", []), by_name.get("DisputeResolved", [])
    if evidence:
        e = evidence[-1]["args"]
        agreed = bytes(e["expected"]) == bytes(e["replayed"]) and bytes(e["expected"]) != bytes(32)
        outcome = bool(resolved[-1]["args"]["workerWins"]) if resolved else None
        where = "no interval (the bundle itself)" if int(e["interval"]) == 2**32 - 1 else f"interval {e['interval']}"
        report.check("dispute outcome matches its replay", outcome is not None and outcome == agreed,
                     f"{where}: recorded {bytes(e['expected']).hex()[:12]}…, replayed {bytes(e['replayed']).hex()[:12]}…; "
                     f"{'the worker won' if outcome else 'the client won'}, report 0x{bytes(e['reportHash']).hex()[:12]}…")

    settled, refunded = by_name.get("JobSettled", []), by_name.get("JobRefunded", [])
    if settled:
        s = settled[-1]["args"]
        report.check("payment", s["amount"] == job.escrow and s["payee"] == operator,
                     f"{s['amount']} paid to the operator {s['payee']}")
    if refunded:
        r = refunded[-1]["args"]
        report.check("refund", r["amount"] == job.escrow and r["client"] == job.client,
                     f"{r['amount']} refunded to {r['client']}" + (f", worker slashed {r['slashed']}" if r["slashed"] else ""))
    if data_key is not None:
        _check_dataset(report, suite, job.dataset_id, data_key)
    return report


def _check_bundle(report: AuditReport, suite: Suite, bundle: Path, rebuilt: Attestation, rebuilt_digest: bytes,
                  signer: str, block: int) -> None:
    def read(name: str) -> bytes | None:
        path = bundle / name
        return path.read_bytes() if path.is_file() else None

    sealed = read("output.sealed")
    report.check("sealed output hash", sealed is not None and blake3.blake3(sealed).digest() == rebuilt.output_hash,
                 "output.sealed matches the attested hash" if sealed is not None and blake3.blake3(sealed).digest() == rebuilt.output_hash
                 else "output.sealed is missing or differs from the attested hash")
    metrics = read("metrics.json")
    report.check("metrics hash", metrics is not None and blake3.blake3(metrics).digest() == rebuilt.metrics_hash,
                 "metrics.json matches" if metrics is not None and blake3.blake3(metrics).digest() == rebuilt.metrics_hash
                 else "metrics.json is missing or differs")
    trajectory = read("trajectory.jsonl")
    if trajectory is not None:
        root = merkle.root_of(line for line in trajectory.splitlines() if line)
        report.check("trajectory root", root == rebuilt.trajectory_root,
                     "trajectory.jsonl rebuilds the attested root" if root == rebuilt.trajectory_root else "trajectory.jsonl does not match")
    else:
        report.check("trajectory root", False, "trajectory.jsonl is missing")
    raw = read("attestation.json")
    if raw is None:
        report.check("attestation signature", False, "attestation.json is missing")
        return
    try:
        doc = json.loads(raw)
        signature = bytes.fromhex(str(doc.pop("signature")).removeprefix("0x"))
        att = Attestation.from_json(doc)
    except (LlmosError, KeyError, ValueError, json.JSONDecodeError) as exc:
        report.check("attestation signature", False, f"attestation.json is malformed: {exc}")
        return
    chain_id = int(suite.w3.eth.chain_id)
    same = digest(att, chain_id, suite.market.address) == rebuilt_digest
    report.check("bundle attestation is the recorded one", same, "same digest" if same else "attestation.json differs from what was submitted")
    if suite.w3.eth.get_code(to_checksum_address(signer), block):
        # a contract signer (EIP-1271): ask it, as of the submission block
        from eth_abi import encode

        data = bytes.fromhex("1626ba7e") + encode(["bytes32", "bytes"], [rebuilt_digest, signature])
        try:
            answer = bytes(suite.w3.eth.call({"to": to_checksum_address(signer), "data": data}, block))
        except Exception:  # a reverting signer contract is simply a failed check
            answer = b""
        ok = answer[:4] == bytes.fromhex("1626ba7e")
        report.check("attestation signature", ok, f"EIP-1271 signer {signer} {'accepts' if ok else 'rejects'} it")
        return
    try:
        recovered = recover(att, signature, chain_id, suite.market.address)
    except LlmosError as exc:
        report.check("attestation signature", False, str(exc))
        return
    report.check("attestation signature", recovered == signer,
                 f"signed by the worker's registered signer {signer}" if recovered == signer else f"signed by {recovered}, not the worker's signer {signer}")


def _block_time(suite: Suite, number: int) -> int:
    return int(suite.w3.eth.get_block(number)["timestamp"])


class Metrics(BaseModel):
    """What a worker's metrics.json must say (the attested metrics hash binds these exact bytes)."""

    model_config = ConfigDict(extra="allow")

    weights_hash: str = Field(pattern=r"^0x[0-9a-f]{64}$")
    final_trainable_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    metric: str = Field(min_length=1)
    before: float
    after: float
    higher_is_better: bool
    steps: int = Field(ge=1)
    train_examples: int = Field(ge=1)
    eval_examples: int = Field(ge=1)

    @field_validator("before", "after")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value


def read_metrics(raw: bytes | None) -> Metrics | str:
    """The parsed metrics, or why they are not acceptable."""
    if raw is None:
        return "metrics.json is missing"
    try:
        return Metrics.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        return f"metrics.json does not parse against its schema: {str(exc).splitlines()[0]}"


TRAJECTORY_KEYS = {"step", "loss", "lr", "weights_hash", "checkpoint"}


def read_trajectory(raw: bytes | None) -> list[dict[str, Any]] | str:
    """The trajectory records, or why the file is not the canonical form its root was computed over.

    Canonical: one compact, key-sorted JSON object per line, each line ending in LF, nothing else (no CR, no blank
    line), at least one record, steps strictly increasing. Only then is the Merkle root over the lines a commitment
    to exactly these records."""
    if raw is None:
        return "trajectory.jsonl is missing"
    if not raw:
        return "the trajectory is empty"
    if not raw.endswith(b"\n") or b"\r" in raw:
        return "the trajectory is not LF-terminated lines"
    records: list[dict[str, Any]] = []
    for n, line in enumerate(raw[:-1].split(b"\n"), 1):
        try:
            record = json.loads(line)
        except ValueError:
            return f"trajectory line {n} is not JSON"
        if not isinstance(record, dict) or set(record) != TRAJECTORY_KEYS:
            return f"trajectory line {n} does not hold exactly {sorted(TRAJECTORY_KEYS)}"
        if json.dumps(record, sort_keys=True, separators=(",", ":")).encode() != line:
            return f"trajectory line {n} is not in canonical form"
        if not isinstance(record["step"], int) or (records and record["step"] <= records[-1]["step"]):
            return f"trajectory line {n}: steps must increase"
        records.append(record)
    return records


def _check_contents(report: AuditReport, bundle: Path, rebuilt: Attestation, recipe_uri: str) -> None:
    """The public audit of what the worker published: the metrics and the trajectory are well-formed, agree with
    each other and with the recipe the job names."""
    metrics = read_metrics((bundle / "metrics.json").read_bytes() if (bundle / "metrics.json").is_file() else None)
    report.check("metrics schema", isinstance(metrics, Metrics), "metrics.json has every field, well-typed"
                 if isinstance(metrics, Metrics) else str(metrics))
    trajectory = read_trajectory((bundle / "trajectory.jsonl").read_bytes() if (bundle / "trajectory.jsonl").is_file() else None)
    report.check("trajectory form", isinstance(trajectory, list), f"{len(trajectory)} canonical record(s)"
                 if isinstance(trajectory, list) else str(trajectory))
    if not isinstance(metrics, Metrics) or not isinstance(trajectory, list):
        return
    kept = [(k, str(r["checkpoint"])) for k, r in enumerate(trajectory, 1) if r["checkpoint"]]
    missing = [k for k, c in kept if not (bundle / "checkpoints" / f"{k}.sealed").is_file()
               or blake3.blake3((bundle / "checkpoints" / f"{k}.sealed").read_bytes()).hexdigest() != c]
    if kept and not (bundle / "checkpoints.key").is_file():
        missing = missing or [0]
    report.check("checkpoints published", not missing,
                 (f"{len(kept)} sealed checkpoint(s) match their commitments" if kept else "none kept (the market had no arbiter key)")
                 if not missing else f"checkpoint(s) {missing} missing or not the committed bytes (a dispute's replay cannot start there)")
    last = trajectory[-1]
    try:
        from llmos_chain.recipe import fetch_recipe

        recipe_steps: int | None = fetch_recipe(recipe_uri, rebuilt.recipe_hash).hyper.steps
        why = ""
    except LlmosError as exc:
        if _transient(exc):
            raise
        recipe_steps, why = None, f"the recipe could not be read: {exc}"
    agree = recipe_steps is not None and last["step"] == metrics.steps == recipe_steps
    report.check("trajectory agrees with the metrics and recipe", agree and last["weights_hash"] == metrics.final_trainable_hash,
                 f"{metrics.steps} steps as the recipe asks; the last record's weights are the final ones"
                 if agree and last["weights_hash"] == metrics.final_trainable_hash
                 else why or f"last record: step {last['step']}, weights {last['weights_hash'][:12]}…; metrics: {metrics.steps} steps, "
                              f"final weights {metrics.final_trainable_hash[:12]}…; recipe: {recipe_steps} steps")


def client_audit(suite: Suite, job_id: int, bundle: Path, client_key: EncryptionKey, data_key: bytes | None = None,
                 check_output: Callable[[str, bytes], dict[str, Any]] | None = None) -> AuditReport:
    """The public audit plus what only the client can check: unwrap `output.key`, decrypt the output, check its hash
    against the attested metrics' weights hash, load it on the recipe's base model and run it (in a worker process:
    this package imports no torch), and check its trainable weights are the trajectory's last record.

    Anything short of every check passing must not be accepted."""
    report = audit_job(suite, job_id, bundle, data_key)
    job = get_job(suite, job_id)
    metrics = read_metrics((bundle / "metrics.json").read_bytes() if (bundle / "metrics.json").is_file() else None)
    trajectory = read_trajectory((bundle / "trajectory.jsonl").read_bytes() if (bundle / "trajectory.jsonl").is_file() else None)
    context = OutputContext(int(suite.w3.eth.chain_id), suite.market.address, job_id, job.client)
    try:
        data = bytes(stream.open_to_memory((bundle / "output.sealed").read_bytes(), unwrap_key((bundle / "output.key").read_bytes(),
                                                                                            client_key, context)))
    except (LlmosError, OSError) as exc:
        report.check("output opens with the client's key", False, str(exc))
        return report
    report.check("output opens with the client's key", True, f"{len(data):,} bytes decrypted")
    weights_ok = isinstance(metrics, Metrics) and "0x" + blake3.blake3(data).hexdigest() == metrics.weights_hash
    report.check("output is the attested weights", weights_ok, "its hash is the metrics' weights hash" if weights_ok
                 else "the decrypted output does not hash to the attested weights hash")
    if not weights_ok or not isinstance(trajectory, list):
        return report
    try:
        from llmos_chain.recipe import fetch_recipe

        recipe = fetch_recipe(job.recipe_uri, job.recipe_hash)
        result = (check_output or run_output_check)(recipe.canonical_bytes().decode(), data)
    except LlmosError as exc:
        if _transient(exc):
            raise
        report.check("output loads and runs on the base model", False, str(exc))
        return report
    runs = bool(result.get("finite")) and bool(result.get("shape_ok"))
    report.check("output loads and runs on the base model", runs, f"{result.get('probes')} probe input(s), finite outputs"
                 if runs else f"the model's outputs on probe inputs are not usable: {result}")
    same = result.get("trainable_hash") == trajectory[-1]["weights_hash"]
    report.check("output is the trajectory's final state", same, "its trainable weights hash to the last trajectory record"
                 if same else "its trainable weights differ from the last trajectory record")
    return report


def run_output_check(recipe_json: str, weights: bytes, timeout_s: float = 600.0) -> dict[str, Any]:
    """`python -m worker check` on a private temporary copy of the output (0600, removed after)."""
    import os
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="llmos-check-") as tmp:
        recipe_path, weights_path = Path(tmp) / "recipe.json", Path(tmp) / "output.safetensors"
        recipe_path.write_text(recipe_json)
        fd = os.open(weights_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(weights)
        try:
            proc = subprocess.run([sys.executable, "-m", "worker", "check", "--recipe", str(recipe_path), "--weights", str(weights_path)],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise LlmosError(f"checking the output took over {timeout_s:.0f}s") from None
    if proc.returncode != 0:
        raise LlmosError(f"the output could not be loaded on its base model: {proc.stderr.strip()[-300:] or proc.returncode}")
    try:
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise LlmosError("the output check printed no result") from None


def _check_dataset(report: AuditReport, suite: Suite, dataset_id: int, data_key: bytes) -> None:
    """For whoever holds the data key (the owner): the registered root is really the data's."""
    record = call(suite.datasets.functions.getDataset(dataset_id))
    root, cipher, uri = bytes(record[2]), bytes(record[3]), str(record[4])
    try:
        with tempfile.TemporaryDirectory(prefix="llmos-audit-") as tmp:
            path = fetch(uri, Path(tmp), cipher)
            with stream.SealedFile.open(path) as sealed:
                stream.open_to_memory(sealed, data_key, root)
    except LlmosError as exc:
        if _transient(exc):
            raise
        report.check("dataset matches its registered root", False, str(exc))
        return
    report.check("dataset matches its registered root", True, "cipher hash and content root verified")
