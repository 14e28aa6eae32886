"""The arbiter's daemon: decide disputed results by replaying the training, before the dispute deadline.

For each Disputed job the arbiter waits for the data owner's `VerifierGranted` (the owner's agent sends it), fetches
the result bundle from the configured result sources, replays every interval within the time left (the ends first,
then a bisection if the last disagrees, else the rest in order; `every=False`: the ends and the bisection only;
`llmos_chain.verification`), publishes its report (`reports/JOB.json`) and calls `resolveDisputeWithEvidence`: the worker wins when every replayed interval agrees. A bundle the worker did not
publish, or whose trajectory is not the attested one, loses the dispute for the worker.

What the arbiter cannot tell is left to the market's default outcome (the worker's claim stands after the deadline):
no grant from the owner, disputes of failure claims (nothing was trained to replay), or a replay it could not run in
time. Trouble with the chain node is retried and never decided against anyone. The result sources are the
provider's: a bundle or checkpoints they do not deliver by the margin before the deadline count as not published.
Every transaction goes through the outbox (`resolve:JOB:DISPUTE_TX`), every decision is recorded in the `decisions`
table.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from llmos_chain.agent import DECISIONS_SCHEMA, DecisionLog
from llmos_chain.chain.connect import NODE_TROUBLE
from llmos_chain.chain.contracts import Sender, call
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.follower import Follower
from llmos_chain.chain.market import JobState, MarketClient, ReplayEvidence, find_client_key, get_job
from llmos_chain.chain.outbox import Intent, Outbox

from llmos_chain.crypto.keys import EncryptionKey
from llmos_chain.errors import LlmosError, VerificationError
from llmos_chain.results import ResultNotFoundError, fetch_bundle
from llmos_chain.store import Store
from llmos_chain.verification import NO_INTERVAL, Finding, evidence_hash, report_hash, verifier_grant, verify_job

log = logging.getLogger("llmos.arbiter")


@dataclass(frozen=True)
class ArbiterPolicy:
    """Where bundles come from, and how close to the deadline the arbiter stops waiting (seconds of chain time)."""

    results: tuple[str, ...]
    margin_s: int = 600
    replay_timeout_s: float = 3600.0
    threads: int | None = None
    # every interval (one replay per stretch between kept checkpoints, within the time left), not only the ends and a
    # bisection: a worker that tampers in one middle interval and trains honestly around it passes the ends
    every: bool = True


@dataclass
class ArbiterReport:
    resolved: dict[int, bool] = field(default_factory=dict)  # job -> worker wins
    waiting: list[int] = field(default_factory=list)
    left_to_default: list[int] = field(default_factory=list)


class Arbiter(DecisionLog):
    decision_log = log

    def __init__(self, suite: Suite, store: Store, account: LocalAccount, key: EncryptionKey, policy: ArbiterPolicy,
                 reports_dir: Path, confirmations: int = 0, revert_patience_s: float = 5.0) -> None:
        self.suite, self.store, self.account, self.key, self.policy = suite, store, account, key, policy
        self.reports_dir = reports_dir
        self.follower = Follower(suite, store, confirmations=confirmations)
        self.box = Outbox(suite.w3, store, account, {"JobMarket": suite.market}, already_done=self._already_done,
                          confirmations=confirmations, revert_patience_s=revert_patience_s, follower_gated=True)
        store.db.executescript(DECISIONS_SCHEMA)

    # ---------------------------------------------------------------- set-up
    def ensure_key(self) -> int:
        """Register this arbiter's public key with the market (once) and name it as the arbiter key."""
        arbiter = str(call(self.suite.market.functions.arbiter()))
        if arbiter.lower() != self.account.address.lower():
            raise LlmosError(f"{self.account.address} is not this market's arbiter ({arbiter})")
        client = MarketClient(self.suite, Sender(self.suite.w3, self.account))
        public = self.key.public_bytes()
        key_id = find_client_key(self.suite, self.account.address, public)
        if key_id is None:
            key_id, _ = client.register_client_key(self.key.kind, public)
        if int(call(self.suite.market.functions.arbiterKeyId())) != key_id:
            client.set_arbiter_key(key_id)
        return key_id

    # ---------------------------------------------------------------- the loop
    def step(self) -> ArbiterReport:
        report = ArbiterReport()
        try:
            self.follower.poll()
        except NODE_TROUBLE:
            if not self.follower.identity_ok:
                raise
            log.debug("follower poll failed this step", exc_info=True)
        self.box.drive(wait_s=0.0)
        for job in self.store.jobs("disputed"):
            try:
                self._consider(int(job["job_id"]), report)
            except NODE_TROUBLE as exc:
                log.info("job %s: node trouble, trying again next step: %s", job["job_id"], exc)
        self.box.drive(wait_s=0.0)
        return report

    def run_forever(self, poll_interval_s: float = 5.0, stop: Any = None) -> None:
        import threading

        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.step()
            except NODE_TROUBLE as exc:
                if not self.follower.identity_ok:
                    raise
                log.warning("step failed (node trouble), retrying: %s", exc)
            stop.wait(poll_interval_s)

    # ---------------------------------------------------------------- one dispute
    def _dispute(self, job_id: int) -> tuple[str, int]:
        row = self.store.db.execute("SELECT tx_hash, args FROM events WHERE job_id = ? AND name = 'JobDisputed' "
                                    "ORDER BY block DESC, log_index DESC LIMIT 1", (job_id,)).fetchone()
        if row is None:
            return "0x", 0
        import json

        return str(row["tx_hash"])[:18], int(json.loads(row["args"]).get("resolveBy", 0))

    #: Seconds kept back from a replay's budget to send the decision before the deadline.
    SEND_SLACK_S = 60

    def _consider(self, job_id: int, report: ArbiterReport) -> None:
        tx, resolve_by = self._dispute(job_id)
        kind = f"resolve:{tx}"
        if self._decided(job_id, kind):
            return
        now = int(self.suite.w3.eth.get_block("latest")["timestamp"])
        late = now >= resolve_by - self.policy.margin_s
        if now > resolve_by:
            self._decide(job_id, kind, "default", "the dispute deadline passed: the market's default outcome applies")
            report.left_to_default.append(job_id)
            return
        if verifier_grant(self.suite, job_id) is None:
            if late:
                self._decide(job_id, kind, "default", "the data owner granted nothing to replay with: left to the default outcome")
                report.left_to_default.append(job_id)
            else:
                report.waiting.append(job_id)
            return
        with tempfile.TemporaryDirectory(prefix="llmos-arbiter-") as tmp:
            bundle = self._bundle(job_id, Path(tmp), late)
            if bundle is None:
                if not late:
                    report.waiting.append(job_id)
                    return
                finding = Finding(job_id, False, None, "", "", "no configured result source publishes the job's bundle")
            else:
                # a verdict that cannot be sent before the deadline is worth nothing: the replay gets the time left
                budget = min(self.policy.replay_timeout_s, resolve_by - now - self.SEND_SLACK_S)
                try:
                    if budget <= 0:
                        raise VerificationError("no time is left before the dispute deadline to replay")
                    finding = verify_job(self.suite, job_id, bundle, self.key, Path(tmp) / "work", every=self.policy.every,
                                         timeout_s=budget, threads=self.policy.threads)
                except VerificationError as exc:
                    if late:
                        self._decide(job_id, kind, "default", f"could not verify in time: {exc}")
                        report.left_to_default.append(job_id)
                    else:
                        log.warning("job %s: cannot verify now, trying again: %s", job_id, exc)
                        report.waiting.append(job_id)
                    return
        self._resolve(job_id, kind, tx, finding, report)

    def _bundle(self, job_id: int, dest: Path, late: bool = False) -> Path | None:
        """The job's bundle with its checkpoints from the first source that has it; None to wait (nothing found yet, or
        its checkpoints could not be fetched now). When `late`, a bundle whose checkpoints did not come is used as is:
        the replay then finds them missing, which is the worker's finding."""
        for source in self.policy.results:
            try:
                found = fetch_bundle(source, job_id, dest / "bundle")
            except ResultNotFoundError:
                continue
            except LlmosError as exc:
                log.info("job %s: %s did not answer: %s", job_id, source, exc)
                continue
            if found.parent != dest / "bundle":  # a local results directory: work on a copy
                copy = dest / "bundle" / str(job_id)
                shutil.copytree(found, copy, dirs_exist_ok=True)
                found = copy
            try:
                self._fetch_checkpoints(source, job_id, found)
            except LlmosError as exc:
                log.info("job %s: %s did not deliver the checkpoints: %s", job_id, source, exc)
                if not late:
                    return None
            return found
        return None

    @staticmethod
    def _fetch_checkpoints(source: str, job_id: int, bundle: Path) -> None:
        from llmos_chain.results import fetch_checkpoints

        fetch_checkpoints(source, job_id, bundle)

    def _resolve(self, job_id: int, kind: str, tx: str, finding: Finding, report: ArbiterReport) -> None:
        key = f"resolve:{job_id}:{tx}"
        if self.store.db.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone() is not None:
            # queued before a crash, the decision not yet recorded: the queued evidence (and its report) stand
            self._decide(job_id, kind, "worker-wins" if finding.agrees else "client-wins", "queued before a restart")
            report.resolved[job_id] = finding.agrees
            return
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        (self.reports_dir / f"{job_id}.json").write_bytes(finding.report_bytes() + b"\n")
        interval = finding.interval if finding.interval is not None else (NO_INTERVAL if not finding.agrees else finding.intervals - 1)
        evidence = ReplayEvidence(int(interval), evidence_hash(finding.expected), evidence_hash(finding.replayed), report_hash(finding))
        self.box.add(key, "JobMarket", "resolveDisputeWithEvidence",
                     [job_id, self.store.terms(job_id), finding.agrees, evidence.as_tuple()])
        self._decide(job_id, kind, "worker-wins" if finding.agrees else "client-wins",
                     f"interval {finding.interval}: {finding.detail}" if finding.interval is not None else finding.detail)
        report.resolved[job_id] = finding.agrees

    def _already_done(self, intent: Intent) -> bool:
        if intent.function == "resolveDisputeWithEvidence":
            return get_job(self.suite, int(intent.args[0])).state is not JobState.DISPUTED
        return False
