"""The provider's daemon: follow events, allocate open jobs in batches, run granted jobs, post results.

Each `step()` is one pass of: follow the chain → drive the outbox → allocate the open jobs as one
batch → start the jobs that were granted to our workers → collect finished runs and queue their
submissions or failure reports → withdraw credits. Every chain write goes through the outbox under a
key that names its effect (`assign:JOB:WORKER:OPENING_TX`, `assign-many:WORKER:DIGEST` for `assign_batch_from` or more
jobs to one worker in one allocation, `submit:JOB`, `fail:JOB`, `withdraw:TOKEN:N`), so a restart at any point
neither loses nor repeats anything; which jobs were started is kept in SQLite too.

Faults are normal: each phase of a step is guarded on its own (a node error in one does not stop the others, and is
logged once, then condensed), transient node errors are retried by the transport, and a fault of the node, the host or
the worker process is never reported on chain as the job's failure. What to do for a Running job is derived again from
the chain and the disk at every step: a finished bundle is (re)submitted, a run is started only if there is none, and
on start a finished bundle left by a previous process is adopted instead of training again. A node that is not the
chain followed so far (`Follower.check_identity`) stops every write until it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from llmos_chain.attestation import Attestation
from llmos_chain.chain.connect import NODE_TROUBLE
from llmos_chain.chain.deploy import Suite
from llmos_chain.chain.follower import Follower
from llmos_chain.chain.contracts import call
from llmos_chain.chain.market import JobState, ZERO_ADDRESS, get_job
from llmos_chain.chain.outbox import Intent, Outbox
from llmos_chain.errors import LlmosError, NodeLaggingError
from llmos_chain.market.allocator import JobDemand, WorkerSupply, allocate
from llmos_chain.market.executor import Executor, Outcome
from llmos_chain.store import Store, StoredEvent

log = logging.getLogger("llmos.coordinator")

RUNS_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    job_id INTEGER PRIMARY KEY, worker TEXT NOT NULL, status TEXT NOT NULL, started REAL NOT NULL,
    finished REAL, report TEXT, pid INTEGER
);
CREATE TABLE IF NOT EXISTS estimates (worker_class TEXT PRIMARY KEY, ratio REAL NOT NULL, runs INTEGER NOT NULL);
"""
WEI = 10**18
#: States in which a job occupies its worker's GPUs: from the assignment until its run ends. A submitted result waiting
#: for the client (up to its challenge window) still locks collateral on chain, but no GPU.
GPU_STATES = ("assigned", "running")
#: Seconds before a run stopped by an infrastructure fault is started again.
RETRY_AFTER_S = 15.0
#: Seconds a revert at gas estimation must persist before the intent is given up (a lagging backend may estimate).
REVERT_PATIENCE_S = 5.0
#: From this many jobs for one worker in one allocation, they go in `assignMany` transactions (one estimate, signature
#: and transaction for up to ASSIGN_BATCH_MAX jobs); fewer go one `assign` each, which a competitor cannot make revert
#: together.
ASSIGN_BATCH_FROM = 4
ASSIGN_BATCH_MAX = 50


@dataclass(frozen=True)
class WorkerConfig:
    """One of this provider's workers as the coordinator schedules it."""

    address: str
    gpus: int
    mem_gib: int
    price_per_gpu_hour_wei: int
    speed: float = 1.0
    worker_class: str = "default"
    gpu_slots: tuple[int, ...] = ()
    command: Any = None  # the WorkerCommand for this worker's process (its keys); None: the executor's default


@dataclass
class StepReport:
    new_events: int = 0
    assigned: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    solve_s: float = 0.0


class RuntimeEstimator:
    """GPU-hours a job needs at speed 1.0: a model-size heuristic, corrected per worker class by observed runs."""

    PARAMS = {"minilm-l6": 22.7e6, "tiny-bert": 0.3e6, "tiny-gpt2": 0.3e6}
    FLOPS_PER_GPU_HOUR = 20e12 * 3600 * 0.3  # a modest GPU at 30 % utilisation

    def __init__(self, store: Store) -> None:
        self.store = store
        store.db.executescript(RUNS_SCHEMA)

    def work(self, recipe: dict[str, Any] | None) -> float:
        if not recipe:
            return 1.0
        hyper = recipe.get("hyper", {})
        base = recipe.get("base_model", {})
        params = self.PARAMS.get(str(base.get("name")), 125e6)
        tokens = hyper.get("steps", 100) * hyper.get("batch_size", 16) * hyper.get("max_length", 64)
        return max(1e-3, 6 * params * tokens / self.FLOPS_PER_GPU_HOUR)

    def ratio(self, worker_class: str) -> float:
        row = self.store.db.execute("SELECT ratio FROM estimates WHERE worker_class = ?", (worker_class,)).fetchone()
        return float(row["ratio"]) if row else 1.0

    def observe(self, worker_class: str, predicted_h: float, actual_h: float) -> None:
        """Move the class's correction towards actual/predicted (exponential average, weight 0.3)."""
        if predicted_h <= 0 or actual_h <= 0:
            return
        old = self.ratio(worker_class)
        new = 0.7 * old + 0.3 * (actual_h / predicted_h)
        self.store.db.execute("INSERT INTO estimates (worker_class, ratio, runs) VALUES (?, ?, 1) "
                              "ON CONFLICT(worker_class) DO UPDATE SET ratio = ?, runs = runs + 1", (worker_class, new, new))


def _stop_orphan(pid: int) -> None:
    """Kill the process group of a worker run that outlived its coordinator (it would race the new run)."""
    import os
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Coordinator:
    def __init__(
        self,
        suite: Suite,
        store: Store,
        operator: LocalAccount,
        workers: list[WorkerConfig],
        executor: Executor,
        confirmations: int = 0,
        solver: str = "highs",
        solve_time_limit_s: float = 2.0,
        token_prices: dict[str, float] | None = None,
        withdraw: bool = True,
        max_batch: int | None = None,
        fetch_policy: Any = None,
        fee_bump_after_s: float = 60.0,
        max_reorg_depth: int = 64,
        assign_batch_from: int = ASSIGN_BATCH_FROM,
    ) -> None:
        self.suite = suite
        self.store = store
        self.operator = operator
        self.workers = {w.address: w for w in workers}
        self.executor = executor
        self.solver = solver
        self.solve_time_limit_s = solve_time_limit_s
        # ETH (wei) per base unit of each accepted ERC-20; jobs paid in other tokens are left to others
        self.token_prices = {ZERO_ADDRESS.lower(): 1.0, **{k.lower(): float(v) for k, v in (token_prices or {}).items()}}
        self.withdraw = withdraw
        self.max_batch = max_batch  # jobs allocated per cycle (None: all open jobs as one batch)
        # this many jobs or more for one worker in one allocation go in `assignMany` transactions (0: never)
        self.assign_batch_from = assign_batch_from
        self.estimator = RuntimeEstimator(store)
        from llmos_chain.net import FetchPolicy

        # What this daemon may fetch for the jobs it estimates (recipes): by default what its worker processes may
        # read, i.e. local files only under the executor's configured roots.
        self.fetch_policy: FetchPolicy = fetch_policy or FetchPolicy(file_roots=getattr(executor.command, "file_roots", None),
                                                                     timeout_s=5.0)
        self.follower = Follower(suite, store, confirmations=confirmations, on_event=self._on_event, max_reorg_depth=max_reorg_depth)
        self.outbox = Outbox(suite.w3, store, operator, {"JobMarket": suite.market}, already_done=self._already_done,
                             stuck_after_s=fee_bump_after_s, confirmations=confirmations, still_wanted=self._still_wanted,
                             revert_patience_s=REVERT_PATIENCE_S, follower_gated=True)
        self.trouble: dict[str, dict[str, Any]] = {}  # phase → {"error", "count", "since", "next_log"}: condensed logging
        self._adopted = False
        self._recipes: dict[tuple[str, str], tuple[dict[str, Any] | None, str]] = {}
        self._worker_ids: dict[str, int] = {}
        self._since: dict[tuple[int, str], int] = {}
        self._dispute_window_s: int | None = None
        self.last_solve_s = 0.0
        #: The allocator's last solve, for the dashboard: when, jobs considered and assigned, objective, bound, gap, time.
        self.last_solve: dict[str, Any] | None = None
        self.results_dir: Path | None = getattr(executor.command, "results", None)

    # ---------------------------------------------------------------- the loop
    def step(self) -> StepReport:
        """One pass. Each phase runs even if an earlier one met a node error (logged, condensed); nothing is written to
        a node that is not the followed chain."""
        report = StepReport()

        def follow() -> None:
            report.new_events = self.follower.poll().new_events

        def allocate() -> None:
            report.assigned, report.solve_s = self._allocate()

        def start() -> None:
            report.started = self._start_granted()

        def collect() -> None:
            report.finished = self._collect()

        self._phase("follow", follow)
        if not self._adopted:
            self._phase("adopt", self._adopt_finished)
        self._phase("collect", collect)  # local: records outcomes and queues their transactions
        if not self.follower.identity_ok:
            return report
        self._phase("send", self._drive)
        self._phase("allocate", allocate)
        self._phase("start", start)
        self._phase("resubmit", self._resubmit)
        self._phase("finalize", self._finalize_due)
        if self.withdraw:
            self._phase("withdraw", self._withdraw)
        self._phase("send", self._drive)
        return report

    def _phase(self, name: str, fn: Any) -> bool:
        """Run one phase; a node error ends only this phase. The first error of a kind is logged, repeats are
        counted and logged at growing intervals (1, 2, 4 … 64 repeats), and the recovery is logged once."""
        try:
            fn()
        except NODE_TROUBLE as exc:
            text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            text = text if len(text) <= 240 else text[:237] + "…"
            entry = self.trouble.get(name)
            quiet = isinstance(exc, NodeLaggingError)  # expected behind load balancers: info unless it persists
            if entry is None or entry["error"] != text:
                log.log(logging.INFO if quiet else logging.WARNING, "%s: %s (will retry)", name, text)
                self.trouble[name] = {"error": text, "count": 1, "since": time.time(), "next_log": 2}
            else:
                entry["count"] += 1
                if entry["count"] >= entry["next_log"]:
                    log.warning("%s: still failing (%d times in %.0f s): %s", name, entry["count"], time.time() - entry["since"], text)
                    entry["next_log"] = min(entry["count"] * 2, entry["count"] + 64)
            return False
        if name in self.trouble:
            entry = self.trouble.pop(name)
            if entry["count"] > 1 or "NodeLaggingError" not in entry["error"]:
                log.info("%s: recovered after %d failed attempt(s)", name, entry["count"])
        return True

    def safe_step(self) -> StepReport | None:
        """One step; returns None if any phase met a node error (state is in SQLite; the next step retries)."""
        report = self.step()
        return None if self.trouble else report

    def run_forever(self, poll_interval_s: float = 2.0, stop: Any = None) -> None:
        """Steps until `stop` (a threading.Event) is set; SIGTERM and SIGINT set it when run in the main thread, so
        the daemon ends between steps: nothing half-written, runs left to be adopted or restarted by the next start."""
        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, frame: Any) -> None:
                if stop.is_set():  # a second signal: do not wait for the step (e.g. retrying a dead node)
                    raise SystemExit(128 + signum)
                log.info("signal %d: stopping after this step (again to stop now)", signum)
                stop.set()

            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, on_signal)
        while not stop.is_set():
            self.safe_step()
            stop.wait(poll_interval_s)

    def health(self, stale_after_s: float = 30.0, max_lag_blocks: int = 16) -> dict[str, Any]:
        """What `/health` returns: observed state only (no node call), so it answers while the node hangs."""
        st = self.follower.status
        now = time.time()
        age = None if st.last_poll_at is None else round(now - st.last_poll_at, 1)
        lag = self.follower.lag()
        pending = self.outbox.pending()
        stuck = [i.key for i in pending if i.sent_at is not None and now - i.sent_at > self.outbox.stuck_after_s]
        problems = []
        if st.identity != "ok":
            problems.append(f"node identity: {st.identity}")
        if age is None or age > stale_after_s:
            problems.append("no successful poll yet" if age is None else f"last successful poll {age:.0f} s ago")
        if lag is not None and lag > max_lag_blocks:
            problems.append(f"{lag} blocks behind")
        problems += [f"{phase}: {t['error']} ({t['count']}x)" for phase, t in sorted(self.trouble.items()) if t["count"] >= 3]
        return {"ok": not problems, "problems": problems, "identity": st.identity, "node_head": st.node_head,
                "cursor": st.cursor, "lag_blocks": lag, "events_behind": lag, "last_poll_age_s": age, "last_error": st.last_error,
                "lagging_answers": st.lagging_answers, "behind_polls": st.behind_polls, "reorgs": st.reorgs,
                "last_reorg": st.last_reorg, "outbox_depth": len(pending), "stuck_intents": len(stuck),
                "confirmations": self.follower.confirmations}

    def _drive(self) -> None:
        for intent in self.outbox.drive(wait_s=0.0):
            job = intent.args[0] if intent.function != "withdraw" else None
            what = f"job {job}: {intent.function}" if job is not None else f"{intent.function} {intent.args[0]}"
            if intent.status == "confirmed":
                log.info("%s confirmed in block %s (tx %s)", what, intent.block, (intent.tx_hash or "")[:18])
            elif intent.status == "done_elsewhere":
                log.info("%s already on chain", what)
            else:
                log.warning("%s failed: %s", what, intent.error)

    def _on_event(self, event: StoredEvent) -> None:
        """One INFO line per transition of one of our jobs (what the follower newly recorded)."""
        if event.job_id is None:
            return
        job = self.store.job(event.job_id)
        if job is None or job["worker"] not in self.workers:
            return
        log.info("job %s: %s (block %d) → %s", event.job_id, event.name, event.block, job["state"])

    # ---------------------------------------------------------------- allocation
    def _recipe(self, uri: str, recipe_hash: str) -> dict[str, Any] | None:
        """The job's recipe for the runtime estimate, fetched within this daemon's fetch policy and checked against
        its hash; None when it cannot be had now (see `_recipe_verdict`)."""
        return self._recipe_verdict(uri, recipe_hash)[0]

    def _recipe_verdict(self, uri: str, recipe_hash: str) -> tuple[dict[str, Any] | None, str]:
        """(recipe, "ok"), (None, "retry") after a transient failure, or (None, "bad") for a job no worker of ours can
        run (unreadable, too large, outside our roots, wrong hash): such a job is skipped, never fatal."""
        key = (uri, recipe_hash)
        cached = self._recipes.get(key)
        if cached is not None:
            return cached
        from llmos_chain.net import FetchError
        from llmos_chain.recipe import fetch_recipe

        try:
            expected = bytes.fromhex(recipe_hash.removeprefix("0x"))
            verdict: tuple[dict[str, Any] | None, str] = (
                fetch_recipe(uri, expected, policy=self.fetch_policy).model_dump(mode="json"), "ok")
        except FetchError as exc:  # transient: ask again next cycle
            log.info("recipe %s not available now (%s); will retry", uri, exc)
            return None, "retry"
        except (LlmosError, ValueError) as exc:
            log.warning("skipping jobs with recipe %s: %s", uri, exc)
            verdict = (None, "bad")
        self._recipes[key] = verdict
        return verdict

    def worker_id(self, address: str) -> int:
        """The registry id of one of our workers (ids never change for a registration; 0 is never cached)."""
        worker_id = self._worker_ids.get(address)
        if worker_id is None:
            worker_id = int(call(self.suite.workers.functions.idOf(address)))
            if worker_id == 0:
                raise LlmosError(f"worker {address} is not registered with this market's registry")
            self._worker_ids[address] = worker_id
        return worker_id

    def _busy_gpus(self) -> dict[str, int]:
        busy: dict[str, int] = {}
        for job in self.store.jobs():
            if job["worker"] in self.workers and job["state"] in GPU_STATES:
                busy[job["worker"]] = busy.get(job["worker"], 0) + int(job["gpu_count"])
        # Our assigns not on chain yet, or mined in a block the follower has not read yet (the store still says Open),
        # hold their GPUs all the same. The worker is the one the key names (`assign:JOB:WORKER:OPENING`): worker ids
        # are only cached once looked up, which a restarted coordinator has not done yet.
        for job_id, worker in self._assigning():
            job = self.store.job(job_id)
            if job is not None and job["state"] in GPU_STATES and job["worker"] == worker:
                continue  # already counted above
            busy[worker] = busy.get(worker, 0) + (int(job["gpu_count"]) if job else 0)
        return busy

    def _assigning(self) -> list[tuple[int, str]]:
        """(job, worker) of our assigns not on chain yet, or mined in a block the follower has not read (the store still
        says Open). The worker is the one the key names (`assign:JOB:WORKER:…`, `assign-many:WORKER:…`): worker ids are
        only cached once looked up, which a restarted coordinator has not done yet."""
        cursor = self.store.cursor(self.suite.deployment.start_block - 1).block
        rows = [(i.key, i.function, i.args) for i in self.outbox.pending() if i.function in ("assign", "assignMany")]
        rows += [(str(r["key"]), str(r["function"]), json.loads(r["args"])) for r in self.store.db.execute(
            "SELECT key, function, args FROM outbox WHERE function IN ('assign', 'assignMany') AND sender = ? "
            "AND status = 'confirmed' AND block > ?", (self.operator.address, cursor))]
        out: list[tuple[int, str]] = []
        for key, function, args in rows:
            parts = key.split(":")
            if function == "assign" and len(parts) >= 3 and parts[0] == "assign":
                out.append((int(parts[1]), parts[2]))
            elif function == "assignMany" and len(parts) >= 2 and parts[0] == "assign-many":
                out += [(int(j), parts[1]) for j in args[0]]
        return out

    def _allocate(self) -> tuple[list[int], float]:
        pending_jobs = {job_id for job_id, _ in self._assigning()}  # assigns mined after the cursor: not Open in fact
        open_jobs = [j for j in self.store.jobs("open") if j["job_id"] not in pending_jobs]
        if not open_jobs:
            return [], 0.0
        now = int(self.suite.w3.eth.get_block("latest")["timestamp"])
        busy = self._busy_gpus()
        # A job can be taken while a full run window still fits before its deadline at the time the assign is mined,
        # a later block than the latest (`now + 1` at the earliest); the worker then has exactly `run_time` seconds from
        # the grant, so that is the time the estimated work must fit in. The batch counts only jobs we could take:
        # jobs skipped below must not fill it for ever.
        demands = []
        for j in open_jobs:
            if self.max_batch is not None and len(demands) >= self.max_batch:
                break
            if now + 1 > int(j["deadline"]) - int(j["run_time"]) or j["token"].lower() not in self.token_prices:
                continue
            recipe, verdict = self._recipe_verdict(j["recipe_uri"], j["recipe_hash"])
            if verdict != "ok":
                continue  # a recipe we cannot read now (or ever) is a job we do not take
            demands.append(JobDemand(j["job_id"], int(j["gpu_count"]), int(j["gpu_mem_gib"]),
                                     int(j["escrow"]) * self.token_prices[j["token"].lower()] / WEI,
                                     float(j["run_time"]), self.estimator.work(recipe)))
        supplies = [
            WorkerSupply(w.address, w.gpus - busy.get(w.address, 0), w.mem_gib, w.price_per_gpu_hour_wei / WEI,
                         w.speed / self.estimator.ratio(w.worker_class))
            for w in self.workers.values() if w.gpus - busy.get(w.address, 0) > 0
        ]
        if not demands or not supplies:
            return [], 0.0
        result = allocate(demands, supplies, time_limit_s=self.solve_time_limit_s, solver=self.solver)
        self.last_solve_s = result.solve_s
        self.last_solve = {"at": time.time(), "considered": len(demands), "workers": len(supplies),
                           "assigned": len(result.assignments), "objective": result.cost, "bound": result.bound,
                           "gap": result.gap, "status": result.status, "solve_s": result.solve_s}
        if result.assignments:
            log.info("allocated %d of %d open job(s) in %.2f s: %s", len(result.assignments), len(demands), result.solve_s,
                     ", ".join(f"{j}→{w[:10]}" for j, w in sorted(result.assignments.items())))
        by_worker: dict[str, list[int]] = {}
        for job_id, worker in sorted(result.assignments.items()):
            by_worker.setdefault(worker, []).append(job_id)
        for worker, job_ids in by_worker.items():
            if self.assign_batch_from and len(job_ids) >= self.assign_batch_from:
                # one transaction for many jobs (assignMany): it reverts as a whole if any of them was taken meanwhile,
                # and the rest are allocated again at the next step
                for a in range(0, len(job_ids), ASSIGN_BATCH_MAX):
                    chunk = job_ids[a : a + ASSIGN_BATCH_MAX]
                    opened = ",".join(f"{j}@{self._opened_by(j)}" for j in chunk)
                    digest = hashlib.sha256(opened.encode()).hexdigest()[:16]
                    self.outbox.add(f"assign-many:{worker}:{digest}", "JobMarket", "assignMany",
                                    [chunk, [self.store.terms(j) for j in chunk], self.worker_id(worker)])
                continue
            for job_id in job_ids:
                # keyed by the event that opened the job: a reopened job, or one posted again after a reorg, is a new intent
                self.outbox.add(f"assign:{job_id}:{worker}:{self._opened_by(job_id)}", "JobMarket", "assign",
                                [job_id, self.store.terms(job_id), self.worker_id(worker)])
        return sorted(result.assignments), result.solve_s

    def _opened_by(self, job_id: int) -> str:
        row = self.store.db.execute("SELECT tx_hash FROM events WHERE job_id = ? AND name IN ('JobPosted', 'JobReopened') "
                                    "ORDER BY block DESC, log_index DESC LIMIT 1", (job_id,)).fetchone()
        return str(row["tx_hash"])[:18] if row else "0x"

    # ---------------------------------------------------------------- running
    def _start_granted(self) -> list[int]:
        started = []
        for job in self.store.jobs("running"):
            worker = self.workers.get(job["worker"])
            if worker is None or job["job_id"] in self.executor.running:
                continue
            row = self.store.db.execute("SELECT status, pid, finished FROM runs WHERE job_id = ?", (job["job_id"],)).fetchone()
            if row is not None and row["status"] == "retry":
                if time.time() < float(row["finished"] or 0) + RETRY_AFTER_S:
                    continue  # an infrastructure fault stopped the last run: try again after a pause
            elif row is not None and row["status"] != "running":
                continue  # finished; its submission or failure report is in the outbox
            if row is not None and row["pid"]:
                _stop_orphan(int(row["pid"]))  # a run left by a previous coordinator process: start afresh
            running = self.executor.start(job["job_id"], list(worker.gpu_slots), command=worker.command)
            self.store.db.execute("INSERT OR REPLACE INTO runs (job_id, worker, status, started, pid) VALUES (?, ?, 'running', ?, ?)",
                                  (job["job_id"], worker.address, time.time(), running.process.pid))
            log.info("job %s: worker %s started (pid %d)", job["job_id"], worker.address[:10], running.process.pid)
            started.append(job["job_id"])
        return started

    def _grant_time(self, job_id: int) -> int | None:
        """The chain time of the job's latest grant (the start of its run window), from the block of its event."""
        row = self.store.db.execute("SELECT block FROM events WHERE job_id = ? AND name = 'AccessGranted' "
                                    "ORDER BY block DESC, log_index DESC LIMIT 1", (job_id,)).fetchone()
        return None if row is None else int(self.suite.w3.eth.get_block(int(row["block"]))["timestamp"])

    def _finished_bundle(self, job_id: int) -> dict[str, Any] | None:
        """The success report of a bundle on disk for this job's CURRENT grant (attested after it began), or None:
        a bundle from an earlier grant (one a reorg replaced) would fail the audit's time check, so it is run again."""
        if self.results_dir is None:
            return None
        from llmos_chain.market.executor import bundle_report

        report = bundle_report(self.results_dir / str(job_id), job_id)
        if report is None:
            return None
        granted = self._grant_time(job_id)
        if granted is None or int(report["attestation"].get("start_time", 0)) < granted:
            return None
        return report

    def _adopt_finished(self) -> None:
        """At start: runs the previous process left behind are adopted, not trained again: a finished bundle is
        submitted as it is; a worker process still alive is watched until it writes one."""
        rows = self.store.db.execute("SELECT job_id, worker FROM runs WHERE status = 'running'").fetchall()
        for row in rows:
            job_id = int(row["job_id"])
            job = self.store.job(job_id)
            worker = self.workers.get(str(row["worker"]))
            if job is None or job["state"] != "running" or worker is None or job_id in self.executor.running:
                continue
            report = self._finished_bundle(job_id)
            if report is not None:
                log.info("job %s: adopting the finished bundle a previous run left; not training again", job_id)
                self._record(Outcome(job_id, True, report, 0, 0.0, self.executor.logs / f"job-{job_id}.log"))
                continue
            pid = self.executor.live_pid(job_id, worker.command)
            if pid is not None:
                log.info("job %s: adopting the worker process %d a previous coordinator started", job_id, pid)
                self.executor.adopt(job_id, pid, worker.command)
                self.store.db.execute("UPDATE runs SET pid = NULL WHERE job_id = ?", (job_id,))
        self._adopted = True

    def _resubmit(self) -> None:
        """A job of ours that is Running on chain with a finished run but no live submission (the submission reverted
        or was reorged away, and the job is Running again): submit the bundle again, or run again if it is stale."""
        rows = self.store.db.execute("SELECT job_id, report FROM runs WHERE status = 'ok'").fetchall()
        for row in rows:
            job_id = int(row["job_id"])
            job = self.store.job(job_id)
            if job is None or job["state"] != "running" or job["worker"] not in self.workers:
                continue
            submits = self.store.db.execute("SELECT status FROM outbox WHERE key = ? OR key LIKE ?",
                                            (f"submit:{job_id}", f"submit:{job_id}:%")).fetchall()
            if any(r["status"] not in ("failed", "done_elsewhere") for r in submits):
                continue  # one is under way, or confirmed and the follower has not read it yet
            if len(submits) >= 5:
                continue
            report = self._finished_bundle(job_id)
            if report is None:
                log.info("job %s: Running again, its finished result predates the current grant: running it again", job_id)
                self.store.db.execute("UPDATE runs SET status = 'retry', finished = 0, pid = NULL WHERE job_id = ?", (job_id,))
                continue
            log.info("job %s: Running again with a finished result on disk: submitting it again", job_id)
            att = Attestation.from_json(report["attestation"])
            signature = bytes.fromhex(report["signature"].removeprefix("0x"))
            self.outbox.add(self._submit_key(job_id), "JobMarket", "submitResult",
                            [job_id, self.store.terms(job_id), list(att.as_tuple()), signature])

    def _submit_key(self, job_id: int) -> str:
        """`submit:JOB` for the first submission of a job, `submit:JOB:N` for the N-th again (after a revert or a reorg)."""
        n = self.store.db.execute("SELECT COUNT(*) AS n FROM outbox WHERE key = ? OR key LIKE ?",
                                  (f"submit:{job_id}", f"submit:{job_id}:%")).fetchone()["n"]
        return f"submit:{job_id}" if n == 0 else f"submit:{job_id}:{n}"

    def _collect(self) -> list[int]:
        finished = []
        for outcome in self.executor.poll():
            self._record(outcome)
            finished.append(outcome.job_id)
        return finished

    def _record(self, outcome: Outcome) -> None:
        job_id = outcome.job_id
        # A fault of the node, the host or the worker process is ours, not the job's: it is never reported on chain
        # (that would refund the client and could be disputed); the run is tried again while its window lasts.
        retry = not outcome.ok and (bool(outcome.report.get("transient")) or outcome.report.get("error") in ("WorkerCrashed", "Cancelled"))
        status = "ok" if outcome.ok else "retry" if retry else "failed"
        self.store.db.execute("UPDATE runs SET status = ?, finished = ?, report = ? WHERE job_id = ?",
                              (status, time.time(), json.dumps(outcome.report), job_id))
        if retry:
            log.warning("job %s: run stopped by %s (%s); will run again", job_id, outcome.report.get("error"), outcome.report.get("message"))
            return
        log.info("job %s: run %s after %.1f s%s", job_id, "finished" if outcome.ok else "failed", outcome.seconds,
                 "" if outcome.ok else f" ({outcome.report.get('error')}: {outcome.report.get('message')}); reporting it")
        if outcome.ok:
            att = Attestation.from_json(outcome.report["attestation"])
            signature = bytes.fromhex(outcome.report["signature"].removeprefix("0x"))
            self.outbox.add(self._submit_key(job_id), "JobMarket", "submitResult", [job_id, self.store.terms(job_id), list(att.as_tuple()), signature])
            worker = self.workers.get(att.worker)
            job = self.store.job(job_id)
            if worker is not None and job is not None:
                predicted = self.estimator.work(self._recipe(job["recipe_uri"], job["recipe_hash"])) / worker.speed
                self.estimator.observe(worker.worker_class, predicted, outcome.seconds / 3600)
        else:
            reason = int(outcome.report.get("reason", 6))
            details = outcome.report.get("details_hash") or "0x" + "00" * 32
            self.outbox.add(f"fail:{job_id}", "JobMarket", "reportFailure",
                            [job_id, self.store.terms(job_id), reason, bytes.fromhex(details.removeprefix("0x"))])

    # ---------------------------------------------------------------- settling what the client left
    def _finalize_due(self) -> None:
        """Settle our results (and failure reports) once their challenge window closed, and disputes the arbiter let
        pass their deadline: without it, a silent client would hold our payment and collateral."""
        waiting = [j for j in self.store.jobs() if j["worker"] in self.workers
                   and j["state"] in ("submitted", "failure_claimed", "disputed", "failure_disputed")]
        if not waiting:
            return
        now = int(self.suite.w3.eth.get_block("latest")["timestamp"])
        for job in waiting:
            job_id, state = int(job["job_id"]), str(job["state"])
            key = f"finalize:{job_id}:{state}"
            if self.store.db.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone() is not None:
                continue
            since = self._since.get((job_id, state))
            if since is None:
                view = get_job(self.suite, job_id)
                if view.state.name.lower() != state:
                    continue  # the follower is behind the chain: decide next step
                since = self._since[(job_id, state)] = view.since
            window = int(job["challenge_window"]) if state in ("submitted", "failure_claimed") else self._dispute_window()
            if now > since + window:
                self.outbox.add(key, "JobMarket", "finalize", [job_id, self.store.terms(job_id)])

    def _dispute_window(self) -> int:
        if self._dispute_window_s is None:
            self._dispute_window_s = int(call(self.suite.market.functions.disputeWindow()))
        return self._dispute_window_s

    # ---------------------------------------------------------------- payouts
    def _withdraw(self) -> None:
        """Pull the operator's credits once per newly settled job of ours, per token (pull payments)."""
        settled: dict[str, int] = {}
        for job in self.store.jobs("settled"):
            if job["worker"] in self.workers:
                settled[job["token"]] = settled.get(job["token"], 0) + 1
        in_flight = {str(i.args[0]) for i in self.outbox.pending() if i.function == "withdraw"}
        for token, count in settled.items():
            if token in in_flight:
                continue  # one withdrawal per token at a time: a second would find nothing left and revert
            key = f"withdraw:{token}:{count}"
            if self.store.db.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone() is None:
                if int(self.suite.market.functions.credits(token, self.operator.address).call()) > 0:
                    self.outbox.add(key, "JobMarket", "withdraw", [token])

    # ---------------------------------------------------------------- chain checks for the outbox
    def _still_wanted(self, intent: Intent) -> bool | None:
        """Whether a transaction the node lost may be broadcast again. A result whose grant a reorg moved (the grant is
        mined again, later) was attested before the grant as the chain now has it, so the audit would reject it: it
        is dropped and the job runs again (`_resubmit`). Until the grant is back, wait."""
        if intent.function != "submitResult":
            return True
        job = self.store.job(int(intent.args[0]))
        if job is None or job["state"] in ("open", "assigned"):
            return None
        if job["state"] != "running":
            return True
        return self._finished_bundle(int(intent.args[0])) is not None

    def _already_done(self, intent: Intent) -> bool:
        if intent.function == "withdraw":
            return int(self.suite.market.functions.credits(intent.args[0], self.operator.address).call()) == 0
        if intent.function == "assignMany":  # done only if every job of it is ours (else the rest is allocated again)
            jobs = [get_job(self.suite, int(j)) for j in intent.args[0]]
            return all(job.worker_id == int(intent.args[2]) and job.state is not JobState.OPEN for job in jobs)
        job = get_job(self.suite, int(intent.args[0]))
        if intent.function == "assign":
            return job.worker_id == int(intent.args[2]) and job.state is not JobState.OPEN
        if intent.function == "submitResult":
            return job.state in (JobState.SUBMITTED, JobState.DISPUTED, JobState.SETTLED, JobState.REFUNDED)
        if intent.function == "finalize":
            return job.state.terminal
        if intent.function == "reportFailure":
            return job.state in (JobState.FAILURE_CLAIMED, JobState.FAILURE_DISPUTED, JobState.FAILED, JobState.REFUNDED)
        return False
