"""The coordinator's state in SQLite (WAL): the follower's cursor and recent block hashes, every event
seen (unique on transaction hash and log index), and the jobs projection derived from those events."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    tx_hash TEXT NOT NULL, log_index INTEGER NOT NULL, block INTEGER NOT NULL, block_hash TEXT NOT NULL,
    contract TEXT NOT NULL, name TEXT NOT NULL, job_id INTEGER, args TEXT NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS events_by_block ON events (block, log_index);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id);
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY, state TEXT NOT NULL, client TEXT NOT NULL, worker TEXT, worker_id INTEGER,
    dataset_id INTEGER NOT NULL, gpu_count INTEGER NOT NULL, gpu_mem_gib INTEGER NOT NULL, deadline INTEGER NOT NULL,
    run_time INTEGER NOT NULL, challenge_window INTEGER NOT NULL, escrow TEXT NOT NULL, token TEXT NOT NULL,
    base_model_hash TEXT NOT NULL, recipe_hash TEXT NOT NULL, recipe_uri TEXT NOT NULL, client_key_id INTEGER NOT NULL,
    terms TEXT NOT NULL, posted_block INTEGER NOT NULL, updated_block INTEGER NOT NULL
);
"""

#: JobMarket events and the job state they leave behind, where the event alone decides it.
STATE_AFTER = {
    "JobPosted": "open", "JobCancelled": "cancelled", "JobAssigned": "assigned", "JobReopened": "open",
    "AccessGranted": "running", "ResultSubmitted": "submitted", "JobSettled": "settled", "JobExpired": "expired",
    "JobFailed": "failed",
}
#: Events whose resulting state depends on the state before them: (event, state before) → state after.
STATE_AFTER_FROM = {
    ("FailureReported", "running"): "failure_claimed",  # in the run window; before the grant JobReopened follows
    ("JobDisputed", "submitted"): "disputed",
    ("JobDisputed", "failure_claimed"): "failure_disputed",
    ("JobRefunded", "disputed"): "refunded",  # a dispute the worker lost; other refunds keep their state
    ("JobRefunded", "failure_disputed"): "refunded",
}
#: States in which a job holds its worker (and its GPUs and collateral).
ACTIVE_STATES = ("assigned", "running", "submitted", "failure_claimed", "disputed", "failure_disputed")


@dataclass(frozen=True)
class Cursor:
    block: int
    hash: str | None


@dataclass(frozen=True)
class StoredEvent:
    tx_hash: str
    log_index: int
    block: int
    block_hash: str
    contract: str
    name: str
    job_id: int | None
    args: dict[str, Any]


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process (not a power cut)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---------------------------------------------------------------- cursor and blocks
    def cursor(self, default_block: int) -> Cursor:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()
        if row is None:
            return Cursor(default_block, None)
        raw = json.loads(row["value"])
        return Cursor(int(raw["block"]), raw["hash"])

    def set_cursor(self, cursor: Cursor) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)",
                        (json.dumps({"block": cursor.block, "hash": cursor.hash}),))

    def meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def remember_block(self, number: int, block_hash: str, keep: int = 256) -> None:
        self.db.execute("INSERT OR REPLACE INTO blocks (number, hash) VALUES (?, ?)", (number, block_hash))
        self.db.execute("DELETE FROM blocks WHERE number < ?", (number - keep,))

    def known_blocks(self) -> list[tuple[int, str]]:
        return [(r["number"], r["hash"]) for r in self.db.execute("SELECT number, hash FROM blocks ORDER BY number DESC")]

    # ---------------------------------------------------------------- events
    def add_event(self, event: StoredEvent) -> bool:
        """Record an event once; False when (tx hash, log index) was already recorded."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO events (tx_hash, log_index, block, block_hash, contract, name, job_id, args) VALUES (?,?,?,?,?,?,?,?)",
            (event.tx_hash, event.log_index, event.block, event.block_hash, event.contract, event.name, event.job_id, json.dumps(event.args)),
        )
        return cur.rowcount == 1

    def events(self, job_id: int | None = None) -> list[StoredEvent]:
        query = "SELECT * FROM events" + (" WHERE job_id = ?" if job_id is not None else "") + " ORDER BY block, log_index"
        rows = self.db.execute(query, () if job_id is None else (job_id,))
        return [StoredEvent(r["tx_hash"], r["log_index"], r["block"], r["block_hash"], r["contract"], r["name"], r["job_id"],
                            json.loads(r["args"])) for r in rows]

    def rollback_after(self, block: int) -> int:
        """Forget everything after `block` (a reorg replaced it) and rebuild the projections."""
        removed = self.db.execute("DELETE FROM events WHERE block > ?", (block,)).rowcount
        self.db.execute("DELETE FROM blocks WHERE number > ?", (block,))
        self.db.execute("DELETE FROM jobs")
        for event in self.events():
            self.project(event)
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone():
            # Transactions mined in the dropped blocks may be gone (or mined again later, in another block): their
            # intents go back to waiting for a receipt of the SAME signed bytes, which the outbox broadcasts again if
            # the node lost them; only if another transaction took their nonce is the effect checked and re-signed.
            self.db.execute(
                "UPDATE outbox SET status = 'sent', block = NULL, error = NULL, sent_at = ? "
                "WHERE block > ? AND status IN ('confirmed', 'failed') AND raw_tx IS NOT NULL", (time.time(), block))
            self.db.execute("UPDATE outbox SET status = 'intent', block = NULL, error = NULL "
                            "WHERE block > ? AND status IN ('confirmed', 'failed') AND raw_tx IS NULL", (block,))
        return removed

    # ---------------------------------------------------------------- projections
    def project(self, event: StoredEvent) -> None:
        """Apply one JobMarket event to the jobs table (idempotent: the final state is the last event's)."""
        a = event.args
        if event.contract != "JobMarket":
            return
        if event.name == "JobPosted":
            t = a["terms"]
            terms = [t["client"], t["datasetOwner"], t["token"], int(t["amount"]), int(t["datasetId"]), int(t["clientKeyId"]),
                     int(t["gpuCount"]), int(t["gpuMemGiB"]), int(t["deadline"]), int(t["runTime"]), int(t["challengeWindow"])]
            self.db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (a["jobId"], "open", t["client"], None, None, int(t["datasetId"]), int(t["gpuCount"]), int(t["gpuMemGiB"]),
                 int(t["deadline"]), int(t["runTime"]), int(t["challengeWindow"]), str(t["amount"]), t["token"],
                 a["baseModelHash"], a["recipeHash"], a["recipeURI"], int(t["clientKeyId"]), json.dumps(terms),
                 event.block, event.block),
            )
            return
        if event.job_id is None:
            return
        row = self.db.execute("SELECT state FROM jobs WHERE job_id = ?", (event.job_id,)).fetchone()
        before = row["state"] if row is not None else None
        state = STATE_AFTER.get(event.name) or STATE_AFTER_FROM.get((event.name, before or ""))
        if state is None:
            return
        if event.name == "JobAssigned":
            worker_id = int(a["workerId"])
            self.db.execute("UPDATE jobs SET state = ?, worker = ?, worker_id = ?, updated_block = ? WHERE job_id = ?",
                            (state, self.worker_address(worker_id), worker_id, event.block, event.job_id))
        elif event.name == "JobReopened":
            self.db.execute("UPDATE jobs SET state = ?, worker = NULL, worker_id = NULL, updated_block = ? WHERE job_id = ?",
                            (state, event.block, event.job_id))
        else:
            self.db.execute("UPDATE jobs SET state = ?, updated_block = ? WHERE job_id = ?", (state, event.block, event.job_id))

    def worker_address(self, worker_id: int) -> str | None:
        """The address registered under a worker id, from the registry's events (ids are never reused)."""
        row = self.db.execute("SELECT args FROM events WHERE contract = 'WorkerRegistry' AND name = 'WorkerRegistered' "
                              "AND json_extract(args, '$.id') = ? LIMIT 1", (worker_id,)).fetchone()
        return str(json.loads(row["args"])["worker"]) if row is not None else None

    def terms(self, job_id: int) -> list[Any] | None:
        """The job's terms as the market's calls take them back (a JSON list in `JobTerms` order)."""
        row = self.db.execute("SELECT terms FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return json.loads(row["terms"]) if row is not None else None

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM jobs" + (" WHERE state = ?" if state else "") + " ORDER BY job_id"
        return [dict(r) for r in self.db.execute(query, (state,) if state else ())]

    def job(self, job_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return dict(row) if row is not None else None
