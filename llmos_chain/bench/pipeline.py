"""Pipeline throughput: jobs per second from `JobPosted` to `JobAssigned` on anvil, with no training.

A client thread posts a burst of jobs as fast as the node takes them; the coordinator (follower →
allocator → outbox) runs in the main thread, waiting 20 ms only after a cycle with nothing to do. For each job the latency is
the time from the client holding its `postJob` receipt to the coordinator holding its `assign`
receipt. The same run measures a baseline coordinator that allocates one job per cycle instead of
the whole open batch, on a fresh node, so the two figures sit side by side.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.devchain import Anvil
from llmos_chain.crypto.keys import EncryptionKey, KeyKind
from llmos_chain.recipe import Recipe
from llmos_chain.chain.market import JobRequest, MarketClient, WorkerParams
from llmos_chain.market.coordinator import Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.store import Store

WORKERS = 4
GPUS_PER_WORKER = 64
POLL_INTERVAL_S = 0.02  # the coordinator's idle wait between cycles


def _one(jobs: int, max_batch: int | None, tmp: Path, time_limit_s: float) -> dict[str, Any]:
    with Anvil() as node:
        conn = connect(node.url)
        accounts = conn.dev_accounts()
        w3 = conn.w3
        suite = Suite(w3, deploy_suite(Sender(w3, accounts[0]), DeployParams(arbiter=accounts[1].address)))
        operator, owner, client = accounts[4], accounts[2], accounts[3]
        op = MarketClient(suite, Sender(w3, operator))
        workers = []
        for signer in accounts[5 : 5 + WORKERS]:
            op.register_worker(signer.address, WorkerParams(signer.address, "BENCH", GPUS_PER_WORKER, 80, 10**14, b"\x01" * 32),
                               stake=100 * 10**18)
            workers.append(WorkerConfig(signer.address, GPUS_PER_WORKER, 80, 10**14))
        dataset_id, _ = MarketClient(suite, Sender(w3, owner)).register_dataset(b"\x01" * 32, b"\x02" * 32, 1, "file:///dev/null")
        command = WorkerCommand(node.url, tmp / "deployment.json", tmp, "none", tmp / "results", tmp / "work")
        store = Store(tmp / f"coordinator-{max_batch}.db")
        coordinator = Coordinator(suite, store, operator, workers, Executor(command, tmp / "logs"), max_batch=max_batch, withdraw=False)

        posted: dict[int, float] = {}
        deadline = int(w3.eth.get_block("latest")["timestamp"]) + 86_400
        client_m = MarketClient(suite, Sender(w3, client))
        key_id, _ = client_m.register_client_key(KeyKind.X25519, EncryptionKey.generate().public_bytes())
        # a real recipe file: a coordinator takes only jobs whose recipe it can read and verify
        recipe = Recipe.model_validate({"task": "sequence-classification", "method": "lora",
                                        "base_model": {"kind": "config", "name": "tiny-bert"}, "hyper": {"steps": 1}})
        recipe_path = tmp / "recipe.json"
        recipe_path.write_bytes(recipe.canonical_bytes())

        def post_all() -> None:
            for _ in range(jobs):
                request = JobRequest(dataset_id, b"\x03" * 32, recipe.hash(), recipe_path.as_uri(), 1, 16, deadline, 3600, 10**16, key_id)
                job_id, _ = client_m.post_job(request)
                posted[job_id] = time.monotonic()

        # the coordinator's clock and the poster's must be the same: monotonic, one process
        poster = threading.Thread(target=post_all, name="bench-client")
        started = time.monotonic()
        poster.start()
        assigned: dict[int, float] = {}
        cycles = 0
        stop_at = started + time_limit_s
        while len(assigned) < jobs and time.monotonic() < stop_at:
            report = coordinator.step()
            cycles += 1
            now = time.monotonic()
            if not report.new_events and not report.assigned:
                time.sleep(POLL_INTERVAL_S)
            for row in store.db.execute("SELECT args FROM outbox WHERE function = 'assign' AND status IN ('confirmed', 'done_elsewhere')"):
                job_id = int(json.loads(row["args"])[0])
                assigned.setdefault(job_id, now)
        poster.join()
        latencies = [assigned[j] - posted[j] for j in assigned if j in posted]
        span = max(assigned.values()) - min(posted.values()) if assigned else float("nan")
        return {"jobs": jobs, "assigned": len(assigned), "batch": max_batch or "all", "cycles": cycles,
                "jobs_per_s": len(assigned) / span if assigned else 0.0,
                "median_latency_s": statistics.median(latencies) if latencies else float("nan"),
                "p90_latency_s": statistics.quantiles(latencies, n=10)[-1] if len(latencies) >= 10 else float("nan")}


def run(jobs: int = 100, time_limit_s: float = 300.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llmos-bench-pipeline-") as tmp:
        batched = _one(jobs, None, Path(tmp), time_limit_s)
        baseline = _one(jobs, 1, Path(tmp), time_limit_s)
    return {"jobs_per_s": batched["jobs_per_s"], "median_latency_s": batched["median_latency_s"],
            "batched": batched, "baseline_one_per_cycle": baseline}
