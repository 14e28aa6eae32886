"""The coordinator's read-only HTTP API (FastAPI, with its OpenAPI schema): jobs, one job's history,
workers, the current allocation, health, and Prometheus metrics; and the dashboard at `/` (see
`llmos_chain.dashboard`). Bound to localhost by default."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, PlainTextResponse

from llmos_chain.dashboard import Provider, mount_dashboard
from llmos_chain.market.coordinator import Coordinator
from llmos_chain.store import ACTIVE_STATES


def create_app(coordinator: Coordinator, dashboard: list[Provider] | None = None, name: str | None = None) -> FastAPI:
    """The API over `coordinator`, with the dashboard at `/` over `dashboard` (default: this coordinator, shown as
    `name`, by default its operator's address)."""
    app = FastAPI(title="llmos coordinator", version="1", description="Read-only view of one provider's coordinator.")
    store = coordinator.store
    mount_dashboard(app, dashboard or [Provider(name or f"operator {coordinator.operator.address[:10]}…", coordinator)])

    @app.get("/health")
    def health() -> dict[str, Any]:
        """The daemon's view of the chain, from what it observed (asks the node nothing, so it answers while the node
        hangs). `ok` is false while the node is not the followed chain, the last successful poll is older than
        `stale_after_s`, the follower is more than `max_lag_blocks` behind, or a phase keeps failing."""
        return coordinator.health()

    @app.get("/jobs")
    def jobs(state: str | None = None) -> list[dict[str, Any]]:
        return store.jobs(state)

    @app.get("/jobs/{job_id}")
    def job(job_id: int) -> dict[str, Any]:
        # SQLite integers are 64-bit signed: an id outside them cannot be a job this coordinator has seen
        row = store.job(job_id) if 0 <= job_id < 2**63 else None
        if row is None:
            raise HTTPException(status_code=404, detail=f"job {job_id} not seen")
        history = [{"event": e.name, "block": e.block, "tx": e.tx_hash, "args": e.args} for e in store.events(job_id)]
        run = store.db.execute("SELECT status, started, finished FROM runs WHERE job_id = ?", (job_id,)).fetchone()
        return {**row, "history": history, "run": dict(run) if run else None}

    @app.get("/jobs/{job_id}/result/{name}")
    def result_file(job_id: int, name: str) -> FileResponse:
        """One file of the job's result bundle (the output is sealed to the client; the rest is public)."""
        from llmos_chain.results import BUNDLE_FILES, CHECKPOINT_KEY

        path = coordinator.results_dir / str(job_id) / name if coordinator.results_dir and job_id >= 0 else None
        if name not in (*BUNDLE_FILES, CHECKPOINT_KEY) or path is None or not path.is_file():
            raise HTTPException(status_code=404, detail=f"no {name} for job {job_id}")
        return FileResponse(path)

    @app.get("/jobs/{job_id}/checkpoint/{record}")
    def checkpoint_file(job_id: int, record: int) -> FileResponse:
        """The sealed training checkpoint kept at trajectory record `record` (sealed to the market's arbiter)."""
        path = coordinator.results_dir / str(job_id) / "checkpoints" / f"{record}.sealed" \
            if coordinator.results_dir and job_id >= 0 and record >= 1 else None
        if path is None or not path.is_file():
            raise HTTPException(status_code=404, detail=f"no checkpoint {record} for job {job_id}")
        return FileResponse(path)

    @app.get("/workers")
    def workers() -> list[dict[str, Any]]:
        busy = coordinator._busy_gpus()
        return [{"address": w.address, "gpus": w.gpus, "busy_gpus": busy.get(w.address, 0), "mem_gib": w.mem_gib,
                 "price_per_gpu_hour_wei": str(w.price_per_gpu_hour_wei), "worker_class": w.worker_class,
                 "runtime_correction": coordinator.estimator.ratio(w.worker_class)} for w in coordinator.workers.values()]

    @app.get("/allocation")
    def allocation() -> list[dict[str, Any]]:
        return [{"job_id": j["job_id"], "worker": j["worker"], "state": j["state"]} for j in store.jobs()
                if j["worker"] in coordinator.workers and j["state"] in ACTIVE_STATES]

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        health = coordinator.health()
        lag = health["lag_blocks"]
        lines = ["# HELP llmos_events_behind Confirmed blocks not yet read (as of the last poll).", "# TYPE llmos_events_behind gauge",
                 f"llmos_events_behind {'NaN' if lag is None else lag}",
                 "# HELP llmos_healthy 1 when /health says ok.", "# TYPE llmos_healthy gauge", f"llmos_healthy {int(health['ok'])}",
                 "# HELP llmos_reorgs_total Reorgs the follower rolled back.", "# TYPE llmos_reorgs_total counter",
                 f"llmos_reorgs_total {health['reorgs']}",
                 "# HELP llmos_lagging_answers_total Log ranges asked again because the answering node lacked them.",
                 "# TYPE llmos_lagging_answers_total counter", f"llmos_lagging_answers_total {health['lagging_answers']}",
                 "# HELP llmos_stuck_intents Transactions pending longer than the fee-bump interval.", "# TYPE llmos_stuck_intents gauge",
                 f"llmos_stuck_intents {health['stuck_intents']}"]
        lines += ["# HELP llmos_outbox_depth Unfinished transactions.", "# TYPE llmos_outbox_depth gauge",
                  f"llmos_outbox_depth {coordinator.outbox.depth()}",
                  "# HELP llmos_jobs Jobs by state.", "# TYPE llmos_jobs gauge"]
        counts: dict[str, int] = {}
        for j in store.jobs():
            counts[j["state"]] = counts.get(j["state"], 0) + 1
        lines += [f'llmos_jobs{{state="{state}"}} {n}' for state, n in sorted(counts.items())]
        lines += ["# HELP llmos_solve_seconds Last allocation solve time.", "# TYPE llmos_solve_seconds gauge",
                  f"llmos_solve_seconds {coordinator.last_solve_s}"]
        return "\n".join(lines) + "\n"

    return app
