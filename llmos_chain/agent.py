"""The owner's and client's agent: grant keys to assigned workers by policy; accept results that audit.

A data owner does not want to sit at a wallet waiting for assignments. The agent follows the chain
(the same follower and SQLite store the coordinator uses) and, for each job assigned on one of the
owner's datasets, checks the grant policy (which datasets, which workers or operators, how many jobs
per dataset) and grants the data key, wrapped to that worker's registered HPKE key for that job. As a
client it can also fetch each submitted result of its jobs, run the full audit, and accept only
results whose every check passes (optionally disputing the rest).

Every transaction goes through the outbox (keys `grant:JOB:ASSIGNMENT_TX:WORKER`, `accept:JOB`, `dispute:JOB`), so a
restart neither repeats nor loses one; every decision is recorded in the `decisions` table.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
from eth_account.signers.local import LocalAccount

from llmos_chain.chain.connect import NODE_TROUBLE
from llmos_chain.chain.contracts import call
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.follower import Follower
from llmos_chain.chain.market import JobState, dispute_bond, get_job
from llmos_chain.chain.outbox import Intent, Outbox
from llmos_chain.crypto.keys import EncryptionKey, Keystore
from llmos_chain.datasets import plan_grant, wrap_for_worker
from llmos_chain.errors import ConfigError, LlmosError, SealedDataError
from llmos_chain.store import Store

log = logging.getLogger("llmos.agent")

DECISIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    job_id INTEGER NOT NULL, kind TEXT NOT NULL, verdict TEXT NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (job_id, kind)
);
"""


class DecisionLog:
    """The `decisions` table of a daemon's store: one verdict per (job, kind), kept across restarts (the agent's and the
    arbiter's)."""

    store: Store
    decision_log: logging.Logger = log

    def decisions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.store.db.execute("SELECT * FROM decisions ORDER BY job_id, kind")]

    def _decided(self, job_id: int, kind: str) -> bool:
        return self.store.db.execute("SELECT 1 FROM decisions WHERE job_id = ? AND kind = ?", (job_id, kind)).fetchone() is not None

    def _decide(self, job_id: int, kind: str, verdict: str, detail: str) -> None:
        self.decision_log.info("job %s: %s %s (%s)", job_id, kind, verdict, detail)
        self.store.db.execute("INSERT OR REPLACE INTO decisions (job_id, kind, verdict, detail, at) VALUES (?, ?, ?, ?, ?)",
                              (job_id, kind, verdict, detail, time.time()))


@dataclass(frozen=True)
class GrantPolicy:
    """Which assigned jobs get the data key.

    `datasets` maps each of the owner's dataset ids to the data key's id in the keystore; `workers`
    and `operators` (lower-case addresses) restrict who may read, empty meaning anyone registered;
    `max_jobs` caps the grants per dataset (None: no cap). A grant lasts for the job's run window: the wrapped
    key is public once published, so there is nothing to expire.
    """

    datasets: dict[int, str]
    workers: frozenset[str] = frozenset()
    operators: frozenset[str] = frozenset()
    max_jobs: int | None = None


@dataclass(frozen=True)
class AcceptPolicy:
    """Which submitted results of the client's jobs are accepted: those whose client audit passes (the output
    decrypted with `client_key`, checked against the attested hashes, loaded and run). Without the key nothing is
    accepted: a public audit alone cannot tell real weights from random bytes."""

    results: str  # a results directory or a coordinator API URL (see llmos_chain.results)
    client_key: EncryptionKey | None = None
    dispute_failed: bool = False


@dataclass
class AgentReport:
    granted: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    verifier_granted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    disputed: list[int] = field(default_factory=list)
    audit_failed: list[int] = field(default_factory=list)


class Agent(DecisionLog):
    def __init__(
        self,
        suite: Suite,
        store: Store,
        owner: LocalAccount | None = None,
        keystore: Keystore | None = None,
        grants: GrantPolicy | None = None,
        client: LocalAccount | None = None,
        accepts: AcceptPolicy | None = None,
        confirmations: int = 0,
        revert_patience_s: float = 5.0,
    ) -> None:
        if grants is not None and (owner is None or keystore is None):
            raise LlmosError("granting needs the owner's account and the keystore holding the data keys")
        if accepts is not None and client is None:
            raise LlmosError("accepting needs the client's account")
        self.suite, self.store = suite, store
        self.grants, self.accepts = grants, accepts
        self.keystore = keystore
        self.follower = Follower(suite, store, confirmations=confirmations)
        contracts = {"JobMarket": suite.market}
        self.owner_box = Outbox(suite.w3, store, owner, contracts, already_done=self._already_done,
                                confirmations=confirmations, revert_patience_s=revert_patience_s, follower_gated=True) if owner else None
        self.client_box = Outbox(suite.w3, store, client, contracts, already_done=self._already_done,
                                 confirmations=confirmations, revert_patience_s=revert_patience_s, follower_gated=True) if client else None
        self.client = client
        store.db.executescript(DECISIONS_SCHEMA)
        self._bundle_mismatch_since: dict[tuple[int, str], float] = {}

    # ---------------------------------------------------------------- the loop
    def step(self) -> AgentReport:
        """One pass; a node that is not the followed chain (`Follower.check_identity`) stops it before any write."""
        report = AgentReport()
        try:
            self.follower.poll()
        except NODE_TROUBLE:
            if not self.follower.identity_ok:
                raise  # never write to another chain
            # a lagging or failing node: decide from what is recorded; every write is checked against the chain first
            log.debug("follower poll failed this step", exc_info=True)
        self._drive()
        if self.grants is not None:
            self._grant(report)
            self._grant_verifier(report)
        if self.accepts is not None:
            self._accept(report)
        self._drive()
        return report

    def run_forever(self, poll_interval_s: float = 2.0, stop: Any = None) -> None:
        """Steps until `stop` is set (SIGTERM and SIGINT set it in the main thread): it ends between two steps. Node
        errors are logged once per kind, then condensed (the count at growing intervals)."""
        import signal
        import threading

        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, frame: Any) -> None:
                if stop.is_set():  # a second signal: do not wait for the step
                    raise SystemExit(128 + signum)
                stop.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, on_signal)
        last, count, next_log = "", 0, 1
        while not stop.is_set():
            try:
                self.step()
                if count:
                    log.info("recovered after %d failed step(s)", count)
                last, count, next_log = "", 0, 1
            except NODE_TROUBLE as exc:  # a node hiccup: state is in SQLite, try again
                text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:240]
                count = count + 1 if text == last else 1
                if text != last or count >= next_log:
                    log.warning("step failed (%d time(s)), will retry: %s", count, text)
                    next_log = count * 2
                last = text
            stop.wait(poll_interval_s)

    def _drive(self) -> None:
        for box in (self.owner_box, self.client_box):
            if box is not None:
                for intent in box.drive(wait_s=0.0):
                    if intent.status == "failed":
                        log.warning("%s failed: %s", intent.key, intent.error)

    # ---------------------------------------------------------------- owner: grants
    def _refusal(self, job: dict[str, Any]) -> str | None:
        policy = self.grants
        assert policy is not None
        worker = str(job["worker"]).lower()
        if policy.workers and worker not in policy.workers:
            return f"worker {job['worker']} is not on the allow list"
        if policy.operators:
            operator = str(call(self.suite.workers.functions.authorities(int(job["worker_id"])))[0]).lower()
            if operator not in policy.operators:
                return f"operator {operator} is not on the allow list"
        if policy.max_jobs is not None:
            used = self.store.db.execute(
                "SELECT COUNT(DISTINCT d.job_id) AS n FROM decisions d JOIN jobs j ON d.job_id = j.job_id "
                "WHERE d.kind LIKE 'grant:%' AND d.verdict = 'granted' AND j.dataset_id = ? AND d.job_id != ?",
                (job["dataset_id"], job["job_id"])).fetchone()["n"]
            if used >= policy.max_jobs:
                return f"dataset {job['dataset_id']} already has {used} grant(s), the policy allows {policy.max_jobs}"
        return None

    def _grant(self, report: AgentReport) -> None:
        policy, box, keystore = self.grants, self.owner_box, self.keystore
        assert policy is not None and box is not None and keystore is not None
        for job in self.store.jobs("assigned"):
            job_id, dataset_id = int(job["job_id"]), int(job["dataset_id"])
            # one decision per assignment: a job reopened (grant timeout) and assigned again is decided afresh
            attempt = self._assignment(job_id)
            kind = f"grant:{attempt}"
            if dataset_id not in policy.datasets:
                continue
            if self._decided(job_id, kind):
                self._grant_again(job, attempt)
                continue
            refusal = self._refusal(job)
            if refusal is not None:
                self._decide(job_id, kind, "refused", refusal)
                report.refused.append(job_id)
                continue
            # The key is wrapped now, for the worker the chain names now, bound to this job.
            try:
                plan = plan_grant(self.suite, dataset_id, job_id)
            except ConfigError as exc:  # the chain moved on (dropped, reassigned) since the follower saw it
                log.info("job %s: not granting now: %s", job_id, exc)
                continue
            try:
                wrapped = wrap_for_worker(self.suite, plan, keystore.load_data_key(policy.datasets[dataset_id]))
            except SealedDataError as exc:  # e.g. a worker registered with a low-order key: refuse it, go on
                self._decide(job_id, kind, "refused", f"worker {plan.worker}'s registered key is unusable: {exc}")
                report.refused.append(job_id)
                continue
            # the key names the worker the key is wrapped to: if the job is reassigned before it is sent, it is not sent
            box.add(f"grant:{job_id}:{attempt}:{plan.worker}", "JobMarket", "grantAccess", [job_id, self.store.terms(job_id), wrapped])
            self._decide(job_id, kind, "granted", f"to worker {plan.worker}")
            report.granted.append(job_id)

    def _grant_verifier(self, report: AgentReport) -> None:
        """For each disputed result on one of the owner's datasets, the data key wrapped to the market's arbiter key, so
        that the arbiter can replay the training (`llmos verify`). Only for jobs this owner already granted a worker:
        the arbiter learns nothing a worker of the owner's choice did not already hold."""
        from llmos_chain.chain.market import arbiter_key
        from llmos_chain.crypto.keys import GrantContext, wrap_key

        policy, box, keystore = self.grants, self.owner_box, self.keystore
        assert policy is not None and box is not None and keystore is not None
        for job in self.store.jobs("disputed"):
            job_id, dataset_id = int(job["job_id"]), int(job["dataset_id"])
            if dataset_id not in policy.datasets:
                continue
            kind = f"verifier:{self._dispute(job_id)}"
            if self._decided(job_id, kind):
                continue
            try:
                key = arbiter_key(self.suite)
                arbiter = str(call(self.suite.market.functions.arbiter()))
            except LlmosError as exc:  # node trouble: try again next step
                log.info("job %s: arbiter key unreadable now: %s", job_id, exc)
                continue
            if key is None:  # not for good: a new arbiter names its key later, still in time for this dispute
                log.info("job %s: the market's arbiter has named no key to grant to yet", job_id)
                continue
            context = GrantContext(int(self.suite.w3.eth.chain_id), self.suite.market.address, dataset_id, job_id, arbiter)
            try:
                wrapped = wrap_key(keystore.load_data_key(policy.datasets[dataset_id]), key.kind, key.public, context)
            except SealedDataError as exc:
                self._decide(job_id, kind, "refused", f"the arbiter's key is unusable: {exc}")
                continue
            box.add(f"verifier:{job_id}:{kind.split(':', 1)[1]}", "JobMarket", "grantVerifier", [job_id, self.store.terms(job_id), wrapped])
            self._decide(job_id, kind, "granted", f"to the arbiter {arbiter} (key {key.key_id})")
            report.verifier_granted.append(job_id)

    def _dispute(self, job_id: int) -> str:
        """The transaction of the job's latest JobDisputed event (names one dispute)."""
        row = self.store.db.execute("SELECT tx_hash FROM events WHERE job_id = ? AND name = 'JobDisputed' "
                                    "ORDER BY block DESC, log_index DESC LIMIT 1", (job_id,)).fetchone()
        return str(row["tx_hash"])[:18] if row else "0x"

    #: Seconds a grant that ended without effect waits for the follower before it is sent again.
    GRANT_RETRY_AFTER_S = 10.0

    def _grant_again(self, job: dict[str, Any], attempt: str) -> None:
        """A grant decided for this assignment whose transaction ended without effect (it reverted, or the node said
        it was not needed, e.g. a lagging backend) while the job is, as far as the follower read, still assigned to
        the same worker: send it again, under a new key. Only once the last one finished `GRANT_RETRY_AFTER_S` ago, so
        a follower merely behind the grant does not cause a second one (the chain check before sending guards too)."""
        box = self.owner_box
        assert box is not None
        job_id = int(job["job_id"])
        prefix = f"grant:{job_id}:{attempt}:"
        rows = self.store.db.execute("SELECT key, status, updated FROM outbox WHERE key LIKE ? AND sender = ? ORDER BY id",
                                     (prefix + "%", box.account.address)).fetchall()
        if not rows or any(r["status"] not in ("failed", "done_elsewhere") for r in rows) or len(rows) >= 5:
            return
        if time.time() - float(rows[-1]["updated"]) < self.GRANT_RETRY_AFTER_S:
            return
        last = box.get(str(rows[-1]["key"]))
        worker = str(last.key).split(":")[3]
        if worker.lower() != str(job["worker"]).lower():
            return
        log.info("job %s: the grant to %s ended without effect (%s) and the job is still assigned: granting again",
                 job_id, worker, last.status)
        box.add(f"{prefix}{worker}:{len(rows)}", "JobMarket", "grantAccess", last.args)

    def _assignment(self, job_id: int) -> str:
        """The transaction of the job's latest JobAssigned event (names one assignment)."""
        row = self.store.db.execute("SELECT tx_hash FROM events WHERE job_id = ? AND name = 'JobAssigned' "
                                    "ORDER BY block DESC, log_index DESC LIMIT 1", (job_id,)).fetchone()
        return str(row["tx_hash"])[:18] if row else "0x"

    # ---------------------------------------------------------------- client: accept what audits
    def _accept(self, report: AgentReport) -> None:
        from llmos_chain.audit import client_audit
        from llmos_chain.results import ResultNotFoundError, fetch_bundle

        policy, box, client = self.accepts, self.client_box, self.client
        assert policy is not None and box is not None and client is not None
        for job in self.store.jobs("submitted"):
            job_id = int(job["job_id"])
            if str(job["client"]).lower() != client.address.lower():
                continue
            # one decision per submission: a result submitted again (after a reorg dropped the first) is audited afresh
            submission = self._submission(job_id)
            kind = f"accept:{submission}"
            if self._decided(job_id, kind):
                self._accept_again(job_id, kind)
                continue
            if policy.client_key is None:
                self._decide(job_id, kind, "no-key", "no client key configured: only a client audit may accept; left for the client")
                continue
            with tempfile.TemporaryDirectory(prefix="llmos-agent-") as tmp:
                try:
                    bundle = fetch_bundle(policy.results, job_id, Path(tmp))
                except ResultNotFoundError:
                    continue  # not published yet: try again next step
                audit = client_audit(self.suite, job_id, bundle, policy.client_key)
            key = self._intent_key("accept", job_id)
            if audit.passed:
                box.add(key, "JobMarket", "accept", [job_id, self.store.terms(job_id)])
                self._decide(job_id, kind, "accepted", f"{len(audit.checks)} audit checks passed")
                report.accepted.append(job_id)
                continue
            failing = [c.name for c in audit.checks if not c.ok]
            seen = self._bundle_mismatch_since.setdefault((job_id, submission), time.monotonic())
            if failing == ["bundle attestation is the recorded one"] and time.monotonic() - seen < self.BUNDLE_GRACE_S:
                continue  # the provider may still be publishing the bundle of this submission (e.g. after a reorg)
            failed = ", ".join(failing)
            report.audit_failed.append(job_id)
            if policy.dispute_failed:
                box.add(self._intent_key("dispute", job_id), "JobMarket", "dispute",
                        [job_id, self.store.terms(job_id), blake3.blake3(failed.encode()).digest()], value=dispute_bond(self.suite))
                self._decide(job_id, kind, "disputed", f"audit failed: {failed}")
                report.disputed.append(job_id)
            else:
                self._decide(job_id, kind, "audit-failed", f"audit failed: {failed}; left for the client")

    #: Seconds a bundle that is not the submitted one is waited for before the audit's verdict stands.
    BUNDLE_GRACE_S = 120.0

    def _submission(self, job_id: int) -> str:
        """The transaction of the job's latest ResultSubmitted event (names one submission)."""
        row = self.store.db.execute("SELECT tx_hash FROM events WHERE job_id = ? AND name = 'ResultSubmitted' "
                                    "ORDER BY block DESC, log_index DESC LIMIT 1", (job_id,)).fetchone()
        return str(row["tx_hash"])[:18] if row else "0x"

    def _intent_key(self, what: str, job_id: int) -> str:
        """`accept:JOB` for the first, `accept:JOB:N` for the N-th again (likewise `dispute`)."""
        n = self.store.db.execute("SELECT COUNT(*) AS n FROM outbox WHERE key = ? OR key LIKE ?",
                                  (f"{what}:{job_id}", f"{what}:{job_id}:%")).fetchone()["n"]
        return f"{what}:{job_id}" if n == 0 else f"{what}:{job_id}:{n}"

    def _accept_again(self, job_id: int, kind: str) -> None:
        """An accept decided for this submission whose transaction ended without effect while the job is still
        Submitted as far as the follower read: send it again (once the last ended GRANT_RETRY_AFTER_S ago)."""
        row = self.store.db.execute("SELECT verdict FROM decisions WHERE job_id = ? AND kind = ?", (job_id, kind)).fetchone()
        box = self.client_box
        if row is None or row["verdict"] != "accepted" or box is None:
            return
        rows = self.store.db.execute("SELECT key, status, updated FROM outbox WHERE (key = ? OR key LIKE ?) AND sender = ? ORDER BY id",
                                     (f"accept:{job_id}", f"accept:{job_id}:%", box.account.address)).fetchall()
        if not rows or any(r["status"] not in ("failed", "done_elsewhere") for r in rows) or len(rows) >= 5:
            return
        if time.time() - float(rows[-1]["updated"]) < self.GRANT_RETRY_AFTER_S:
            return
        log.info("job %s: the accept ended without effect and the result is still submitted: accepting again", job_id)
        box.add(self._intent_key("accept", job_id), "JobMarket", "accept", [job_id, self.store.terms(job_id)])

    # ---------------------------------------------------------------- chain checks for the outboxes
    def _already_done(self, intent: Intent) -> bool:
        job = get_job(self.suite, int(intent.args[0]))
        if intent.function == "grantAccess":
            # Done when granted (the job went past Assigned) or moot when the job is another worker's now. A job that
            # shows Open is NOT taken as done: a lagging backend shows it so before the assignment it was read after.
            worker = intent.key.split(":")[3]
            if job.state in (JobState.OPEN, JobState.ASSIGNED):
                return job.state is JobState.ASSIGNED and job.worker.lower() != worker.lower()
            return True
        if intent.function == "grantVerifier":  # moot once the dispute is decided; otherwise send it (sending twice is harmless)
            return job.state is not JobState.DISPUTED
        if intent.function == "accept":
            return job.state in (JobState.SETTLED, JobState.FAILED)
        if intent.function == "dispute":
            return job.state in (JobState.DISPUTED, JobState.FAILURE_DISPUTED, JobState.SETTLED, JobState.REFUNDED, JobState.FAILED)
        return False
