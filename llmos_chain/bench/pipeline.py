"""Pipeline throughput: jobs per second from `JobPosted` to `JobAssigned` on anvil, with no training.

Three measurements in one run, each on a fresh anvil:

- **The node's ceiling**: plain transfers per second through the same RPC client the coordinator uses (signed ahead
  of time, sent back to back, timed to the last receipt). No coordinator can assign faster than the node mines its
  transactions one per job, so the coordinator's figure is read against this one (`vs_node`).
- **Throughput**: the jobs are posted ahead of time (not timed), then the coordinator (follower → allocator → outbox,
  in this thread, waiting 20 ms only after a cycle with nothing to do) is timed from its first cycle until its follower
  has read every `JobAssigned`. Three coordinators: as configured by default (the jobs one worker gets in one
  allocation go in `assignMany` transactions, so jobs/s may pass the node's transactions/s), one `assign` transaction
  per job, and the baseline allocating one job per cycle (`max_batch` 1), as a provider that took jobs first come
  first served would.
- **Latency at 1 s blocks**: anvil mines a block a second; a client posts a few jobs every block while the
  coordinator runs; each job's latency is the number of blocks from its `JobPosted` block to its `JobAssigned` block
  (1: assigned in the next block, the least possible for a daemon that acts on what it has read).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from llmos_chain.chain.connect import connect
from llmos_chain.chain.contracts import Sender
from llmos_chain.chain.deploy import DeployParams, Suite, deploy_suite
from llmos_chain.chain.devchain import Anvil
from llmos_chain.chain.market import JobRequest, MarketClient, WorkerParams
from llmos_chain.crypto.keys import EncryptionKey, KeyKind
from llmos_chain.market.coordinator import ASSIGN_BATCH_FROM, Coordinator, WorkerConfig
from llmos_chain.market.executor import Executor, WorkerCommand
from llmos_chain.recipe import Recipe
from llmos_chain.store import Store

WORKERS = 4
GPUS_PER_WORKER = 64
POLL_INTERVAL_S = 0.02  # the coordinator's idle wait between cycles
POST_BATCH = 50  # jobs per postJobs transaction when posting ahead


@dataclass
class _Market:
    node: Anvil
    w3: Web3
    suite: Suite
    coordinator: Coordinator
    store: Store
    client: MarketClient
    request: JobRequest


def _market(node: Anvil, max_batch: int | None, tmp: Path, assign_batch_from: int = ASSIGN_BATCH_FROM) -> _Market:
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
    store = Store(tmp / f"coordinator-{max_batch}-{node.port}.db")
    coordinator = Coordinator(suite, store, operator, workers, Executor(command, tmp / "logs"), max_batch=max_batch, withdraw=False,
                              assign_batch_from=assign_batch_from)
    client_m = MarketClient(suite, Sender(w3, client))
    key_id, _ = client_m.register_client_key(KeyKind.X25519, EncryptionKey.generate().public_bytes())
    # a real recipe file: a coordinator takes only jobs whose recipe it can read and verify
    recipe = Recipe.model_validate({"task": "sequence-classification", "method": "lora",
                                    "base_model": {"kind": "config", "name": "tiny-bert"}, "hyper": {"steps": 1}})
    recipe_path = tmp / "recipe.json"
    recipe_path.write_bytes(recipe.canonical_bytes())
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 86_400
    request = JobRequest(dataset_id, b"\x03" * 32, recipe.hash(), recipe_path.as_uri(), 1, 16, deadline, 3600, 10**16, key_id)
    return _Market(node, w3, suite, coordinator, store, client_m, request)


def _assigned_blocks(store: Store) -> dict[int, int]:
    return {int(r["job_id"]): int(r["block"]) for r in store.db.execute(
        "SELECT job_id, MIN(block) AS block FROM events WHERE name = 'JobAssigned' GROUP BY job_id")}


def _run_until_assigned(m: _Market, jobs: int, stop_at: float) -> tuple[int, float]:
    """Coordinator cycles until its follower has read `jobs` JobAssigned events (its assigns are final then);
    (cycles, monotonic time of the last)."""
    cycles = 0
    done_at = time.monotonic()
    while time.monotonic() < stop_at:
        report = m.coordinator.step()
        cycles += 1
        if len(_assigned_blocks(m.store)) >= jobs:
            done_at = time.monotonic()
            break
        if not report.new_events and not report.assigned:
            time.sleep(POLL_INTERVAL_S)
    return cycles, done_at


def node_ceiling(transfers: int = 200) -> dict[str, Any]:
    """Plain transfers per second through the coordinator's RPC client: signed ahead, sent back to back."""
    with Anvil() as node:
        conn = connect(node.url)
        sender = conn.dev_accounts()[9]
        w3 = conn.w3
        nonce = int(w3.eth.get_transaction_count(sender.address))
        fee = int(w3.eth.gas_price) * 2
        to = Web3.to_checksum_address("0x" + "11" * 20)
        signed = [sender.sign_transaction({"to": to, "value": 1, "gas": 21_000, "gasPrice": fee, "nonce": nonce + i,
                                           "chainId": conn.chain_id}) for i in range(transfers)]
        started = time.monotonic()
        hashes = [w3.eth.send_raw_transaction(s.raw_transaction) for s in signed]
        w3.eth.wait_for_transaction_receipt(hashes[-1], timeout=120, poll_latency=0.01)
        elapsed = time.monotonic() - started
    return {"transfers": transfers, "seconds": elapsed, "tx_per_s": transfers / elapsed}


def throughput(jobs: int, max_batch: int | None, tmp: Path, time_limit_s: float, assign_batch_from: int = ASSIGN_BATCH_FROM) -> dict[str, Any]:
    """Jobs posted ahead, then the coordinator timed from its first cycle to its last assign."""
    with Anvil() as node:
        m = _market(node, max_batch, tmp, assign_batch_from)
        left = jobs
        while left:
            n = min(POST_BATCH, left)
            m.client.post_jobs([m.request] * n)
            left -= n
        started = time.monotonic()
        cycles, done_at = _run_until_assigned(m, jobs, started + time_limit_s)
        assigned = len(_assigned_blocks(m.store))
        span = done_at - started
        txs = m.store.db.execute("SELECT COUNT(*) AS n FROM outbox WHERE function IN ('assign', 'assignMany') "
                                 "AND status = 'confirmed'").fetchone()["n"]
    return {"jobs": jobs, "assigned": assigned, "batch": max_batch or "all", "cycles": cycles, "seconds": span,
            "jobs_per_s": assigned / span if assigned else 0.0, "transactions": txs}


def latency(jobs: int, per_block: int, tmp: Path, time_limit_s: float, block_time: float = 1.0) -> dict[str, Any]:
    """A client posts `per_block` jobs a block on a node mining every `block_time` s while the coordinator runs."""
    with Anvil(block_time=block_time) as node:
        m = _market(node, None, tmp)
        posted_at: dict[int, float] = {}

        def post() -> None:
            left = jobs
            while left:
                n = min(per_block, left)
                ids, _ = m.client.post_jobs([m.request] * n)  # returns once mined: one call a block
                now = time.monotonic()
                posted_at.update({i: now for i in ids})
                left -= n

        poster = threading.Thread(target=post, name="bench-client", daemon=True)
        started = time.monotonic()
        poster.start()
        confirmed_at: dict[int, float] = {}
        while time.monotonic() < started + time_limit_s and len(confirmed_at) < jobs:
            report = m.coordinator.step()
            now = time.monotonic()
            for row in m.store.db.execute("SELECT job_id FROM events WHERE name = 'JobAssigned'"):
                confirmed_at.setdefault(int(row["job_id"]), now)
            if not report.new_events and not report.assigned:
                time.sleep(POLL_INTERVAL_S)
        poster.join(timeout=5)
        posted_blocks = {int(r["job_id"]): int(r["block"]) for r in m.store.db.execute(
            "SELECT job_id, block FROM events WHERE name = 'JobPosted'")}
        assigned_blocks = _assigned_blocks(m.store)
    blocks = [assigned_blocks[j] - posted_blocks[j] for j in assigned_blocks if j in posted_blocks]
    seconds = [confirmed_at[j] - posted_at[j] for j in confirmed_at if j in posted_at]
    return {"jobs": jobs, "assigned": len(assigned_blocks), "block_time_s": block_time, "per_block": per_block,
            "median_latency_blocks": statistics.median(blocks) if blocks else float("nan"),
            "max_latency_blocks": max(blocks) if blocks else float("nan"),
            "median_latency_s": statistics.median(seconds) if seconds else float("nan")}


def run(jobs: int = 100, time_limit_s: float = 300.0, latency_jobs: int = 30) -> dict[str, Any]:
    ceiling = node_ceiling(max(jobs, 100))
    with tempfile.TemporaryDirectory(prefix="llmos-bench-pipeline-") as tmp:
        batched = throughput(jobs, None, Path(tmp), time_limit_s)
        per_tx = throughput(jobs, None, Path(tmp), time_limit_s, assign_batch_from=0)
        baseline = throughput(jobs, 1, Path(tmp), time_limit_s)
        live = latency(latency_jobs, 5, Path(tmp), time_limit_s) if latency_jobs else None
    node = ceiling["tx_per_s"]
    target = min(40.0, 0.8 * node)
    return {"jobs_per_s": batched["jobs_per_s"], "node_tx_per_s": node, "vs_node": batched["jobs_per_s"] / node,
            "target_jobs_per_s": target, "meets_target": batched["jobs_per_s"] >= target,
            "median_latency_blocks": live["median_latency_blocks"] if live else None,
            "node_ceiling": ceiling, "batched": batched, "one_tx_per_job": per_tx, "baseline_one_per_cycle": baseline,
            "latency_1s_blocks": live}
