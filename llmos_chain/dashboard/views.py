"""What the dashboard shows, as plain dicts: the jobs of one or more coordinators with their timelines, a job's
history, loss curve and log tail, the workers' slots and the chain figures. Reads the coordinators' stores, their
logs and the public result bundles; asks the node only for block times and gas (each once, then cached)."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos_chain.chain.market import ZERO_ADDRESS
from llmos_chain.market.coordinator import GPU_STATES, Coordinator
from llmos_chain.store import ACTIVE_STATES, STATE_AFTER, STATE_AFTER_FROM

log = logging.getLogger("llmos.dashboard")

#: Every state a job can be in, in the order of its life (the filter offers these; any other is a 400).
STATES = ("open", "assigned", "running", "submitted", "failure_claimed", "disputed", "failure_disputed", "settled",
          "refunded", "failed", "expired", "cancelled")
FINAL_STATES = ("settled", "refunded", "failed", "expired", "cancelled")
#: Jobs the table shows at most (the latest by id); the filter narrows them.
MAX_ROWS = 200
#: Bytes of a worker's log the job page shows (its end).
LOG_TAIL_BYTES = 8192
LOG_TAIL_LINES = 40
WEI = 10**18


@dataclass
class Provider:
    """One coordinator the dashboard shows, under a name (the demo shows two)."""

    name: str
    coordinator: Coordinator
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cached(self, key: Any, compute: Any) -> Any:
        """`compute()` once per key; None (a node error) is not cached, so it is asked again next time."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            value = compute()
        except Exception as exc:  # noqa: BLE001 - a node or disk error leaves a blank, never a 500
            log.debug("dashboard: %r failed: %s", key, exc)
            return None
        if value is not None:
            with self._lock:
                if len(self._cache) > 20_000:
                    self._cache.clear()
                self._cache[key] = value
        return value

    def block_time(self, block: int, block_hash: str) -> int | None:
        w3 = self.coordinator.suite.w3
        return self.cached(("time", block, block_hash), lambda: int(w3.eth.get_block(block)["timestamp"]))

    def gas(self, tx_hash: str) -> int | None:
        w3 = self.coordinator.suite.w3
        return self.cached(("gas", tx_hash), lambda: int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"]))


def owner_of(providers: list[Provider], job: dict[str, Any]) -> Provider:
    """The provider whose worker holds the job, else the first (every coordinator sees every job of its market)."""
    return next((p for p in providers if job.get("worker") in p.coordinator.workers), providers[0])


def table(providers: list[Provider], state: str | None = None, limit: int = MAX_ROWS) -> tuple[list[dict[str, Any]], int]:
    """The jobs table's rows (the latest `limit` jobs by id, oldest first) and how many jobs match in all."""
    jobs = all_jobs(providers, state)
    slots = {id(p): slots_of(p) for p in providers}
    return [job_row(p, j, slots[id(p)]) for p, j in jobs[-limit:]], len(jobs)


def all_jobs(providers: list[Provider], state: str | None = None) -> list[tuple[Provider, dict[str, Any]]]:
    """Every job any of the coordinators has seen, once each (from the coordinator whose worker holds it)."""
    seen: dict[int, list[dict[str, Any]]] = {}
    for p in providers:
        for job in p.coordinator.store.jobs(state):
            seen.setdefault(int(job["job_id"]), []).append(job)
    out = []
    for job_id in sorted(seen):
        rows = seen[job_id]
        # the freshest view of the job (coordinators may poll at different moments)
        row = max(rows, key=lambda r: int(r["updated_block"]))
        owner = owner_of(providers, row)
        out.append((owner, row))
    return out


def find_job(providers: list[Provider], job_id: int) -> tuple[Provider, dict[str, Any]] | None:
    if not 0 <= job_id < 2**63:
        return None
    rows = [row for p in providers if (row := p.coordinator.store.job(job_id)) is not None]
    if not rows:
        return None
    row = max(rows, key=lambda r: int(r["updated_block"]))
    return owner_of(providers, row), row


def timeline(provider: Provider, job_id: int) -> list[dict[str, Any]]:
    """Each event of the job: the state it left, its block, the block's time, the transaction and its gas."""
    out = []
    state: str | None = None
    for e in provider.coordinator.store.events(job_id):
        after = STATE_AFTER.get(e.name) or STATE_AFTER_FROM.get((e.name, state or ""))
        state = after or state
        out.append({"event": e.name, "state": after, "block": e.block, "time": provider.block_time(e.block, e.block_hash),
                    "tx": e.tx_hash, "gas": provider.gas(e.tx_hash)})
    return out


def bundle_dir(provider: Provider, job_id: int) -> Path | None:
    results = provider.coordinator.results_dir
    return None if results is None else results / str(job_id)


def metrics(provider: Provider, job_id: int) -> dict[str, Any] | None:
    path = bundle_dir(provider, job_id)
    if path is None or not (path / "metrics.json").is_file():
        return None
    try:
        raw = json.loads((path / "metrics.json").read_text())
        return {"metric": str(raw["metric"]), "before": float(raw["before"]), "after": float(raw["after"]),
                "higher_is_better": bool(raw.get("higher_is_better", True))}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def audit_verdict(provider: Provider, job: dict[str, Any]) -> dict[str, Any] | None:
    """The public audit of a submitted result (`llmos audit` without the dataset's key), once per job state."""
    job_id = int(job["job_id"])
    if job["state"] in ("open", "assigned", "running", "cancelled", "expired"):
        return None
    path = bundle_dir(provider, job_id)
    if path is None or not (path / "attestation.json").is_file():
        return None

    def run() -> dict[str, Any]:
        from llmos_chain.audit import audit_job

        report = audit_job(provider.coordinator.suite, job_id, path)
        failed = [c.name for c in report.checks if not c.ok]
        return {"passed": report.passed, "checks": len(report.checks), "failed": failed}

    return provider.cached(("audit", job_id, job["state"], int(job["updated_block"])), run)


def trajectory(provider: Provider, job_id: int) -> list[dict[str, float]]:
    """The bundle's trajectory records (step, loss), in file order; [] before the result exists."""
    path = bundle_dir(provider, job_id)
    if path is None or not (path / "trajectory.jsonl").is_file():
        return []
    points = []
    for line in (path / "trajectory.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            points.append({"step": float(record["step"]), "loss": float(record["loss"])})
        except (ValueError, KeyError, TypeError):
            continue
    return points


def log_tail(provider: Provider, job_id: int) -> str:
    """The last lines of the worker's log for this job, with any secret the coordinator passes to it blanked."""
    path = provider.coordinator.executor.logs / f"job-{job_id}.log"
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    lines = text.splitlines()[-LOG_TAIL_LINES:] if size > 0 else []
    text = "\n".join(lines)
    for secret in _secrets(provider.coordinator):
        text = text.replace(secret, "[redacted]")
    return text


def _secrets(coordinator: Coordinator) -> list[str]:
    commands = [coordinator.executor.command, *(w.command for w in coordinator.workers.values() if w.command is not None)]
    values = {v for c in commands for v in getattr(c, "private_key_env", {}).values() if v}
    return sorted({form for v in values for form in (v, v.removeprefix("0x"))} - {""}, key=len, reverse=True)


def amount(wei: str | int, token: str) -> str:
    value = int(wei)
    unit = "ETH" if token.lower() == ZERO_ADDRESS.lower() else f"tokens ({token[:8]}…)"
    return f"{value / WEI:.6g} {unit}"


def job_row(provider: Provider, job: dict[str, Any], slots: dict[int, list[int]] | None = None) -> dict[str, Any]:
    """One line of the jobs table (`slots`: `slots_of(provider)`, when the caller has it for many rows)."""
    job_id = int(job["job_id"])
    worker = provider.coordinator.workers.get(job["worker"] or "")
    slots = slots_of(provider) if slots is None else slots
    return {
        "id": job_id, "state": job["state"], "provider": provider.name if worker else "—",
        "worker": job["worker"], "gpus": int(job["gpu_count"]), "gpu_mem_gib": int(job["gpu_mem_gib"]),
        "slots": slots.get(job_id, []),
        "price": f"{worker.price_per_gpu_hour_wei / WEI:.6g} ETH/GPU-h" if worker else None,
        "escrow": amount(job["escrow"], job["token"]),
        "metrics": metrics(provider, job_id), "audit": audit_verdict(provider, job),
        "timeline": timeline(provider, job_id), "final": job["state"] in FINAL_STATES,
    }


def slots_of(provider: Provider) -> dict[int, list[int]]:
    """Which of its worker's GPU slots each job holds. The allocator counts GPUs per worker; the jobs holding them
    (assigned or running, in id order) are laid over the worker's slots in that order."""
    coordinator = provider.coordinator
    out: dict[int, list[int]] = {}
    for address, worker in coordinator.workers.items():
        slots = list(worker.gpu_slots) or list(range(worker.gpus))
        free = iter(slots)
        for job in coordinator.store.jobs():
            if job["worker"] == address and job["state"] in GPU_STATES:
                out[int(job["job_id"])] = [s for _, s in zip(range(int(job["gpu_count"])), free, strict=False)]
    return out


def workers(providers: list[Provider]) -> list[dict[str, Any]]:
    """Each worker of each coordinator: its slots and which job holds each, and its running processes."""
    out = []
    for p in providers:
        c = p.coordinator
        held = slots_of(p)
        busy = c._busy_gpus()
        for address, worker in c.workers.items():
            slots = list(worker.gpu_slots) or list(range(worker.gpus))
            holder = {slot: job_id for job_id, taken in held.items() for slot in taken
                      if (c.store.job(job_id) or {}).get("worker") == address}
            running = [{"job": job_id, "pid": r.process.pid} for job_id, r in sorted(c.executor.running.items())
                       if (c.store.job(job_id) or {}).get("worker") == address]
            out.append({"provider": p.name, "address": address, "class": worker.worker_class, "gpus": worker.gpus,
                        "busy": busy.get(address, 0), "mem_gib": worker.mem_gib,
                        "slots": [{"slot": s, "job": holder.get(s)} for s in slots], "processes": running})
    return out


def chain(providers: list[Provider]) -> list[dict[str, Any]]:
    """The figures `/metrics` exports, per coordinator, plus the allocator's last solve."""
    out = []
    for p in providers:
        c = p.coordinator
        health = c.health()
        counts: dict[str, int] = {}
        for job in c.store.jobs():
            counts[job["state"]] = counts.get(job["state"], 0) + 1
        active = sum(n for s, n in counts.items() if s in ACTIVE_STATES)
        out.append({"provider": p.name, "health": health, "outbox_depth": c.outbox.depth(), "jobs": counts,
                    "active": active, "solve_s": c.last_solve_s, "last_solve": c.last_solve})
    return out


def columns(samples: deque[tuple[float, dict[str, float]]] | list[tuple[float, dict[str, float]]]) -> dict[str, Any]:
    """Samples as uPlot's columns: {"x": [unix s…], "series": [{"label", "values": […]}…]}."""
    xs = [t for t, _ in samples]
    labels = sorted({k for _, s in samples for k in s})
    return {"x": xs, "series": [{"label": k, "values": [s.get(k) for _, s in samples]} for k in labels]}
