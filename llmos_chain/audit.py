"""Rebuild one job's history from chain events and check every hash and signature.

Needs only an RPC endpoint and the deployment file; the result bundle (sealed output, metrics,
trajectory, attestation) and, for the data owner, the dataset's key add the checks that need them.
The attestation is rebuilt from chain data alone (job terms from `JobPosted`, dataset root from the
registry, result hashes from `ResultSubmitted`) and its EIP-712 digest compared with the one the
market recorded: that proves the worker attested to exactly the posted job and registered dataset.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import blake3
from eth_utils import to_checksum_address

from llmos_chain.attestation import Attestation, digest, recover
from llmos_chain.chain.contracts import call
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.market import ZERO_ADDRESS, JobTerms, get_job, worker_address
from llmos_chain.crypto import merkle, stream
from llmos_chain.crypto.fetch import fetch
from llmos_chain.errors import LlmosError

MARKET_EVENTS = ("JobPosted", "JobAssigned", "JobReopened", "AccessGranted", "ResultSubmitted", "FailureReported", "JobDisputed",
                 "DisputeResolved", "JobSettled", "JobRefunded", "JobCancelled", "JobExpired", "JobFailed")


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
        return {"job_id": self.job_id, "state": self.state, "verdict": "pass" if self.passed else "fail",
                "checks": [asdict(c) for c in self.checks], "history": self.history}


def history_row(name: str, log: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """One event as a JSON-ready row: name, block, tx and its arguments (bytes as hex)."""
    return {"event": name, "block": log["blockNumber"], "tx": "0x" + bytes(log["transactionHash"]).hex(),
            **{k: _jsonable(v) for k, v in dict(log["args"]).items() if k not in skip}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


def job_events(suite: Suite, job_id: int) -> list[tuple[str, Any]]:
    """Every market event naming `job_id`, in chain order."""
    start = suite.deployment.start_block
    found: list[tuple[str, Any]] = []
    for name in MARKET_EVENTS:
        found += [(name, log) for log in getattr(suite.market.events, name)().get_logs(from_block=start, argument_filters={"jobId": job_id})]
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
        registered = _signer_at(suite, worker_id, int(result[-1]["blockNumber"])) if worker_id is not None else None
        report.check("signer at submission", registered is not None and registered == ev["signer"],
                     f"the market took {ev['signer']}, the registry's signer then" if registered == ev["signer"]
                     else f"the market logged {ev['signer']}, the registry names {registered}")
        if bundle is not None:
            _check_bundle(report, suite, bundle, rebuilt, rebuilt_digest, str(ev["signer"]), int(result[-1]["blockNumber"]))

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
        report.check("dataset matches its registered root", False, str(exc))
        return
    report.check("dataset matches its registered root", True, "cipher hash and content root verified")
