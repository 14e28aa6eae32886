"""Soak: N jobs through the whole lifecycle, the daemons behind a fault-injecting proxy.

`llmos bench soak --jobs N --json` runs this on its own anvil and `FaultProxy` (free loopback ports) in a
temporary directory that it removes, with every process it started stopped. The provider's coordinator
(`llmos coordinator run`, with its worker processes), the data owner's agent (`llmos agent run`, grants)
and the client's agent (`llmos agent run`, accepts what audits) are real separate processes whose
`LLMOS_RPC_URL` is the proxy. The harness itself (deployment, worker registration, dataset sealing,
posting jobs, measuring) talks to anvil directly, so faults hit only the daemons. Every job is honest
and good (the sample dataset, a tiny recipe that trains in seconds on CPU), so each one should end
`settled`, and every `FailureReported` is caused by the infrastructure.

The harness, for chaos tests (all chain reads here bypass the proxy)::

    from llmos_chain.bench.soak import SoakRun

    with SoakRun(tmp_path, faults={"error_rate": 0.05}, seed=1) as run:   # anvil, proxy, deployment, daemons
        run.proxy.set(lag_blocks=3, lag_rate=0.3)   # the FaultProxy: change faults, pause, set_upstream, stats()
        run.node                                    # the Anvil behind the proxy (run.w3, run.suite: direct)
        ids = run.post_jobs(3)                      # posted directly; the posting time is kept for latencies
        run.signal("coordinator", signal.SIGKILL)   # or SIGTERM; "owner_agent", "client_agent" likewise
        run.restart("coordinator")                  # stops it if running (SIGINT, then SIGKILL), starts it again
        run.wait_ready()                            # until each daemon printed its banner (connected, looping)
        run.wait(timeout_s=120)                     # until every posted job is terminal on chain (or the timeout);
                                                    # supervise=True restarts daemons that exit, noted in run.crashes
        result = run.measure()                      # the soak's JSON object (see below)
        run.log("coordinator")                      # the tail of a daemon's log

`SoakRun(root, …)` builds everything under `root` (a directory it does not delete; `soak()` uses a temporary
one). Keyword arguments: `faults` (FaultProxy settings, applied once the daemons run), `seed`,
`recipe` (a recipe dict; default `TINY_RECIPE`), `slots` (the worker's GPU slots = concurrent jobs),
`poll_interval_s` (daemons), `confirmations` (coordinator and agents), `expected_state` ("settled").
`start_daemons=False` builds the chain and configs without starting processes (then `run.start(name)`).
`run.procs` maps each daemon's name to its `subprocess.Popen`; `run.api_url` is the coordinator's API;
`run.coordinator_db`, `run.owner_db`, `run.client_db` are the daemons' SQLite files.

`measure()` returns: `jobs`, `settled`, `lost` (jobs not in `expected_state` now), `states` (final state →
count), `duplicate_txs` (mined transactions beyond one per sender, function and job, counting a job's
reopenings as new openings for `assign`/`grantAccess`), `reverted_txs`, `infra_failures`
(`FailureReported` events), `wasted_gas` (gas used by reverted transactions and by duplicates), `latency`
(for `assigned`, `running`, `submitted`, `settled`: `{"p50_s", "p99_s", "n"}`, seconds from the posting
receipt to the first time the harness saw the event on chain, polled every 0.2 s), `txs` (mined
transactions to the market per function), `daemon_crashes` (exits `supervise()` saw and restarted: `soak()`
supervises, like a service manager would), `daemons_alive`, `proxy` (its counters, with `raw_txs` as a count and
`raw_txs_resent`, the same signed bytes forwarded more than once), `faults`, `wall_s`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import TracebackType
from typing import Any

from eth_account.signers.local import LocalAccount

from llmos_chain.basemodel import base_model_hash
from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.devchain import Anvil, anvil_binary, free_port
from llmos_chain.chain.faultproxy import FaultProxy
from llmos_chain.chain.market import JobRequest, JobState, MarketClient, WorkerParams, get_job
from llmos_chain.crypto.keys import EncryptionKey, Keystore
from llmos_chain.datasets import register_dataset, seal_dataset
from llmos_chain.errors import ConfigError, LlmosError
from llmos_chain.recipe import Recipe

#: A recipe that fine-tunes in a few seconds on one CPU core (the tiny BERT config, random init, the sample intents).
TINY_RECIPE: dict[str, Any] = {"task": "sequence-classification", "method": "full",
                               "base_model": {"kind": "config", "name": "tiny-bert"},
                               "hyper": {"steps": 4, "learning_rate": 5e-3, "batch_size": 16, "max_length": 32}}

#: dev accounts (anvil's): who plays which role
DEPLOYER, ARBITER, OWNER, CLIENT, OPERATOR, WORKER = 0, 1, 2, 3, 4, 5
STATE_EVENTS = {"JobAssigned": "assigned", "AccessGranted": "running", "ResultSubmitted": "submitted", "JobSettled": "settled"}
LATENCY_STATES = ("assigned", "running", "submitted", "settled")
DAEMONS = ("coordinator", "owner_agent", "client_agent")


def missing_requirements() -> str | None:
    """Why a soak cannot run here (one line), or None."""
    try:
        anvil_binary()
    except LlmosError as exc:
        return str(exc)
    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        return f"the soak trains real jobs and needs {', '.join(missing)}: pip install -e '.[worker]'"
    return None


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class SoakRun:
    """Anvil + fault proxy + deployment + the three daemons as processes (see the module docstring)."""

    def __init__(self, root: Path, *, faults: dict[str, Any] | None = None, seed: int = 0, recipe: dict[str, Any] | None = None,
                 slots: int = 2, poll_interval_s: float = 0.5, confirmations: int = 0, expected_state: str = "settled",
                 start_daemons: bool = True) -> None:
        self.root = Path(root).resolve()
        self.faults = dict(faults or {})
        self.seed, self.slots, self.poll_interval_s, self.confirmations = seed, slots, poll_interval_s, confirmations
        self.recipe = Recipe.model_validate(recipe or TINY_RECIPE)
        self.expected_state = expected_state
        self.start_daemons = start_daemons
        self.node: Anvil | None = None
        self.proxy: FaultProxy | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.posted: dict[int, float] = {}  # job id → monotonic time of its posting receipt
        self.seen: dict[tuple[int, str], float] = {}  # (job id, state) → first seen (monotonic)
        self.crashes: list[dict[str, Any]] = []  # daemon exits seen by supervise()
        self.events: list[dict[str, Any]] = []  # every market log seen: {"event", "job", "block", "tx"}
        self._monitor: threading.Thread | None = None
        self._monitor_stop = threading.Event()
        self._monitor_lock = threading.Lock()
        self._started = time.monotonic()

    # ---------------------------------------------------------------- setup
    def __enter__(self) -> SoakRun:
        try:
            return self.setup()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def setup(self) -> SoakRun:
        self.root.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()
        self.node = Anvil(log_file=self.root / "anvil.log").start()
        conn = connect(self.node.url)
        self.w3 = conn.w3
        accounts = conn.dev_accounts()
        self.accounts: list[LocalAccount] = accounts
        deployment = deploy_suite(Sender(self.w3, accounts[DEPLOYER]), DeployParams(arbiter=accounts[ARBITER].address))
        self.suite = Suite(self.w3, deployment)
        self.deployment_file = self.root / "deployment.json"
        deployment.save(self.deployment_file)
        self.first_block = int(self.w3.eth.block_number) + 1

        # the provider: one worker with `slots` GPU slots, its HPKE key in the provider's keystore
        provider_ks = self.root / "provider-ks"
        worker_key = EncryptionKey.generate()
        Keystore(provider_ks).save_encryption_key("worker", worker_key)
        worker = accounts[WORKER]
        params = WorkerParams(worker.address, "SOAK", self.slots, 64, 10**14, worker_key.public_bytes(), worker_key.kind)
        MarketClient(self.suite, Sender(self.w3, accounts[OPERATOR])).register_worker(worker.address, params, stake=10 * 10**18)

        # the owner: the sample dataset, sealed and registered
        from llmos_chain.demo import sample_dataset

        owner_ks = Keystore(self.root / "owner-ks")
        sealed = self.root / "owner" / "intents.sealed"
        sealed.parent.mkdir(parents=True, exist_ok=True)
        manifest = seal_dataset(sample_dataset(), sealed, owner_ks, chunk_size=4096)
        self.dataset_id, _ = register_dataset(MarketClient(self.suite, Sender(self.w3, accounts[OWNER])), manifest, sealed.as_uri())

        # the client: its output key, registered; the recipe file
        client_key = EncryptionKey.generate()
        Keystore(self.root / "client-ks").save_encryption_key("client", client_key)
        self.client = MarketClient(self.suite, Sender(self.w3, accounts[CLIENT]))
        self.client_key_id, _ = self.client.register_client_key(client_key.kind, client_key.public_bytes())
        self.recipe_file = self.root / "client" / "recipe.json"
        self.recipe_file.parent.mkdir(parents=True, exist_ok=True)
        self.recipe_file.write_bytes(self.recipe.canonical_bytes())

        # the daemons' configs
        self.api_url = f"http://127.0.0.1:{free_port()}"
        self.coordinator_db, self.owner_db, self.client_db = (self.root / "coordinator.db", self.root / "owner-agent.db",
                                                               self.root / "client-agent.db")
        results = self.root / "results"
        self._write("coordinator.json", {
            "workers": [{"address": worker.address, "gpus": self.slots, "mem_gib": 64, "price_per_gpu_hour_wei": 10**14,
                         "enc_key": "worker", "dev_account": WORKER}],
            "state": str(self.coordinator_db), "results": str(results), "logs": str(self.root / "logs"),
            "work_dir": str(self.root / "work"), "keystore": str(provider_ks), "poll_interval_s": self.poll_interval_s,
            "confirmations": self.confirmations, "file_roots": [str(self.root)], "api_port": int(self.api_url.rsplit(":", 1)[1]),
            "job_time_limit_s": 600})
        self._write("owner-agent.json", {
            "state": str(self.owner_db), "keystore": str(owner_ks.root), "poll_interval_s": self.poll_interval_s,
            "confirmations": self.confirmations,
            "grants": {"datasets": {str(self.dataset_id): manifest.key_id}, "operators": [accounts[OPERATOR].address],
                       "dev_account": OWNER}})
        self._write("client-agent.json", {
            "state": str(self.client_db), "keystore": str(self.root / "client-ks"), "poll_interval_s": self.poll_interval_s,
            "confirmations": self.confirmations,
            "accepts": {"results": str(results), "client_key": "client", "dev_account": CLIENT}})

        self.proxy = FaultProxy(self.node.url, seed=self.seed).start()
        self._monitor = threading.Thread(target=self._follow, name="soak-monitor", daemon=True)
        self._monitor.start()
        if self.start_daemons:
            for name in DAEMONS:
                self.start(name)
        if self.faults:
            self.proxy.set(**self.faults)
        return self

    def _write(self, name: str, config: dict[str, Any]) -> None:
        (self.root / name).write_text(json.dumps(config, indent=1))

    # ---------------------------------------------------------------- processes
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")}
        assert self.proxy is not None
        env.update(LLMOS_RPC_URL=self.proxy.url, LLMOS_DEPLOYMENT=str(self.deployment_file), PYTHONUNBUFFERED="1")
        return env

    def command(self, name: str) -> list[str]:
        base = [sys.executable, "-m", "llmos_chain.cli.main"]
        if name == "coordinator":
            return [*base, "coordinator", "run", "--config", str(self.root / "coordinator.json"), "--dev-account", str(OPERATOR)]
        if name == "owner_agent":
            return [*base, "agent", "run", "--config", str(self.root / "owner-agent.json")]
        if name == "client_agent":
            return [*base, "agent", "run", "--config", str(self.root / "client-agent.json")]
        raise ConfigError(f"no daemon {name!r}: one of {', '.join(DAEMONS)}")

    def start(self, name: str) -> subprocess.Popen[bytes]:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            raise LlmosError(f"{name} is already running (pid {proc.pid})")
        log = open(self.root / f"{name}.log", "ab")
        env = self._env()
        if name == "client_agent":
            env["LLMOS_KEYSTORE"] = str(self.root / "client-ks")
        proc = subprocess.Popen(self.command(name), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def signal(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the daemon (its process only: the coordinator's worker processes are their own sessions)."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)

    def stop(self, name: str, timeout_s: float = 20.0) -> int | None:
        """Ctrl-C the daemon; SIGKILL after `timeout_s`. Its exit code (None if it was never started)."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        return proc.wait()

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        self.stop(name)
        return self.start(name)

    def wait_ready(self, timeout_s: float = 90.0, names: tuple[str, ...] | None = None) -> bool:
        """Until each started daemon printed its banner (it is connected and looping); False on timeout or if one exited."""
        deadline = time.monotonic() + timeout_s
        pending = [n for n in (names or tuple(self.procs))]
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                if self.procs[name].poll() is not None:
                    return False
                if "Ctrl-C stops" in self.log(name, 100_000):
                    pending.remove(name)
            time.sleep(0.2)
        return not pending

    def log(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _own_processes(self) -> list[int]:
        """Processes started for this run that may outlive their parent: those whose arguments name this run's
        deployment file or a daemon config (worker processes a killed coordinator left behind). Never this process
        or one of its ancestors."""
        markers = {str(self.root / n).encode() for n in ("deployment.json", "coordinator.json", "owner-agent.json", "client-agent.json")}
        spared, pid = set(), os.getpid()
        while pid > 1:  # this process and its ancestors
            spared.add(pid)
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
        pids = []
        for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
            if not entry.name.isdigit() or int(entry.name) in spared:
                continue
            try:
                args = set((entry / "cmdline").read_bytes().split(b"\0"))
            except OSError:
                continue
            if args & markers:
                pids.append(int(entry.name))
        return pids

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            try:
                self.stop(name)
            except Exception:  # noqa: BLE001  (cleanup goes on)
                pass
        for pid in self._own_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._monitor_stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        if self.proxy is not None:
            self.proxy.stop()
        if self.node is not None:
            self.node.stop()

    # ---------------------------------------------------------------- jobs
    def post_jobs(self, count: int, amount: int = 10**16) -> list[int]:
        """Post `count` jobs (directly to the node, one transaction each); their ids."""
        ids = []
        deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + 86_400
        request = JobRequest(self.dataset_id, base_model_hash(self.recipe.base_model, self.recipe.hyper.seed), self.recipe.hash(),
                             self.recipe_file.as_uri(), 1, 1, deadline, 3_600, amount, self.client_key_id, run_time=3_600)
        for _ in range(count):
            job_id, _ = self.client.post_job(request)
            self.posted[job_id] = time.monotonic()
            ids.append(job_id)
        return ids

    def states(self) -> dict[int, str]:
        return {job_id: get_job(self.suite, job_id).state.name.lower() for job_id in self.posted}

    def wait(self, timeout_s: float, poll_s: float = 0.5, supervise: bool = False) -> bool:
        """Until every posted job is terminal on chain; False on timeout. With `supervise`, a daemon that exits is
        restarted (as systemd's Restart=always would) and the exit recorded in `crashes`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(JobState[s.upper()].terminal for s in self.states().values()):
                return True
            if supervise:
                self.supervise()
            time.sleep(poll_s)
        return False

    def supervise(self) -> list[str]:
        """Restart every daemon that exited; record each exit in `crashes` (name, exit code, last log line)."""
        restarted = []
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            tail = [line for line in self.log(name, 4000).splitlines() if line.strip()]
            self.crashes.append({"daemon": name, "exit_code": code, "last_line": tail[-1][-300:] if tail else "",
                                 "at_s": round(time.monotonic() - self._started, 2)})
            self.start(name)
            restarted.append(name)
        return restarted

    def _follow(self) -> None:
        """Note when each job event is first on chain (direct reads, every 0.2 s)."""
        names = {}
        for item in self.suite.market.abi:
            if item.get("type") == "event":
                names[bytes(self.w3.keccak(text=_signature(item)))] = item["name"]
        start = self.first_block
        while not self._monitor_stop.wait(0.2):
            try:
                head = int(self.w3.eth.block_number)
                if head < start:  # a node reverted under us (chaos tests): read again from the head
                    start = head + 1
                    continue
                logs = self.w3.eth.get_logs({"address": self.suite.market.address, "fromBlock": start, "toBlock": head})
            except Exception:  # noqa: BLE001  (a chaos test may stop the node for a while)
                continue
            now = time.monotonic()
            with self._monitor_lock:
                for entry in logs:
                    topics = entry["topics"]
                    name = names.get(bytes(topics[0])) if topics else None
                    if name is None or len(topics) < 2 or name in ("ClientKeyRegistered", "Withdrawn", "ArbiterChanged"):
                        continue
                    job_id = int.from_bytes(bytes(topics[1]), "big")
                    self.events.append({"event": name, "job": job_id, "block": int(entry["blockNumber"]),
                                        "tx": "0x" + bytes(entry["transactionHash"]).hex()})
                    if name in STATE_EVENTS:
                        self.seen.setdefault((job_id, STATE_EVENTS[name]), now)
            start = head + 1

    # ---------------------------------------------------------------- measuring
    def _market_txs(self) -> list[dict[str, Any]]:
        """Every mined transaction to the market since the setup: sender, function, job ids, status, gas."""
        market = self.suite.market
        out = []
        for number in range(self.first_block, int(self.w3.eth.block_number) + 1):
            block = self.w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                if tx["to"] is None or tx["to"].lower() != market.address.lower():
                    continue
                receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
                for function, jobs in _decode(market, tx["input"]):
                    out.append({"from": tx["from"], "function": function, "jobs": jobs, "status": int(receipt["status"]),
                                "gas": int(receipt["gasUsed"]), "tx": "0x" + bytes(tx["hash"]).hex()})
        return out

    def measure(self) -> dict[str, Any]:
        time.sleep(0.5)  # let the monitor see the last blocks
        states = self.states()
        txs = self._market_txs()
        with self._monitor_lock:
            events = list(self.events)
            seen = dict(self.seen)
        reopened = Counter(e["job"] for e in events if e["event"] == "JobReopened")
        per_effect: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
        tx_gas: dict[str, int] = {}
        reverted: set[str] = set()
        for t in txs:
            tx_gas[t["tx"]] = t["gas"]
            if t["status"] == 0:
                reverted.add(t["tx"])
            effect = "assign" if t["function"] == "assignMany" else t["function"]  # a job in either is assigned once
            for job in t["jobs"]:
                per_effect[(t["from"], effect, job)].append(t)
        duplicates: set[str] = set()
        duplicate_count = 0
        for (_, function, job), sent in per_effect.items():
            if function in ("postJob", "postJobs", "withdraw", "multicall"):
                continue
            allowed = 1 + (reopened[job] if function in ("assign", "grantAccess") else 0)
            extra = sent[allowed:] if len(sent) > allowed else []
            duplicate_count += len(extra)
            duplicates.update(t["tx"] for t in extra)
        wasted = sum(tx_gas[h] for h in reverted | duplicates)
        latency = {}
        for state in LATENCY_STATES:
            values = [seen[(job, state)] - posted for job, posted in self.posted.items() if (job, state) in seen]
            p50, p99 = percentile(values, 50), percentile(values, 99)
            latency[state] = {"p50_s": None if p50 is None else round(p50, 3), "p99_s": None if p99 is None else round(p99, 3),
                              "n": len(values)}
        final = Counter(states.values())
        proxy = self.proxy.stats() if self.proxy is not None else {"raw_txs": []}
        raw = proxy.pop("raw_txs")
        proxy.update(raw_txs=len(raw), raw_txs_resent=len(raw) - len(set(raw)))
        return {
            "jobs": len(self.posted),
            "settled": final.get("settled", 0),
            "lost": sum(1 for s in states.values() if s != self.expected_state),
            "states": dict(final),
            "duplicate_txs": duplicate_count,
            "reverted_txs": len(reverted),
            "infra_failures": sum(1 for e in events if e["event"] == "FailureReported" and e["job"] in self.posted),
            "wasted_gas": wasted,
            "latency": latency,
            "txs": dict(Counter(t["function"] for t in txs)),
            "proxy": proxy,
            "faults": self.proxy.faults.as_dict() if self.proxy is not None else self.faults,
            "daemons_alive": {name: p.poll() is None for name, p in self.procs.items()},
            "daemon_crashes": list(self.crashes),
            "wall_s": round(time.monotonic() - self._started, 2),
        }


def _signature(item: dict[str, Any]) -> str:
    def kind(param: dict[str, Any]) -> str:
        if param["type"].startswith("tuple"):
            return "(" + ",".join(kind(c) for c in param["components"]) + ")" + param["type"][5:]
        return str(param["type"])

    return f"{item['name']}({','.join(kind(p) for p in item['inputs'])})"


def _decode(market: Any, data: Any) -> list[tuple[str, list[int]]]:
    """(function, job ids) of a call to the market, multicall unwrapped."""
    try:
        fn, args = market.decode_function_input(data)
    except Exception:  # noqa: BLE001  (not a market function: nothing to count)
        return [("unknown", [])]
    name = fn.fn_name
    if name == "multicall":
        return [d for inner in args["data"] for d in _decode(market, inner)]
    if "jobId" in args:
        return [(name, [int(args["jobId"])])]
    if "jobIds" in args:
        return [(name, [int(j) for j in args["jobIds"]])]
    return [(name, [])]


def soak(jobs: int, faults: dict[str, Any] | None = None, timeout_s: float | None = None, seed: int = 0, slots: int = 2,
         keep: Path | None = None) -> dict[str, Any]:
    """One soak run in a temporary directory (or `keep`, left in place); the measurement, with `timed_out`."""
    problem = missing_requirements()
    if problem:
        raise ConfigError(problem)
    budget = timeout_s if timeout_s is not None else 120.0 + 15.0 * jobs
    tmp = Path(tempfile.mkdtemp(prefix="llmos-soak-")) if keep is None else keep
    try:
        with SoakRun(tmp, faults=faults, seed=seed, slots=slots) as run:
            ready = run.wait_ready()
            run.post_jobs(jobs)
            done = run.wait(budget, supervise=True)
            result = run.measure()
            result["timed_out"] = not done
            result["timeout_s"] = budget
            result["daemons_ready_before_posting"] = ready
            if not done or result["lost"]:
                result["logs"] = {name: run.log(name, 600) for name in DAEMONS}
        return result
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["DAEMONS", "TINY_RECIPE", "SoakRun", "missing_requirements", "percentile", "soak"]
