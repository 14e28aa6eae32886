"""The dashboard's routes on the coordinator's FastAPI app: two pages (`/`, `/job/{id}`), the HTML fragments they
poll (`/ui/...`), two JSON series for the charts, and the static assets (`/static/...`)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from llmos_chain.dashboard import views
from llmos_chain.dashboard.sampler import ResourceSampler, describe, shared_sampler
from llmos_chain.dashboard.views import Provider

HERE = Path(__file__).resolve().parent
#: Milliseconds between two polls of a live part of the page.
POLL_MS = 1000


def _when(ts: float | int | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(float(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: str | None, n: int = 10) -> str:
    if not value:
        return "—"
    return value if len(value) <= n + 2 else f"{value[:n]}…"


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _when
    templates.env.filters["short"] = _short
    templates.env.globals["poll_ms"] = POLL_MS
    return templates


def _state(state: str | None) -> str | None:
    if state in (None, "", "all"):
        return None
    if state not in views.STATES:
        raise HTTPException(status_code=400, detail=f"unknown state {state!r}; one of: all, {', '.join(views.STATES)}")
    return state


def mount_dashboard(app: FastAPI, providers: list[Provider], sampler: ResourceSampler | None = None) -> ResourceSampler:
    """Add the dashboard over `providers` to `app`; `sampler` (default: the process's, started) gives the resource chart."""
    if not providers:
        raise ValueError("the dashboard needs at least one coordinator")
    templates = _templates()
    if sampler is None:
        sampler = shared_sampler()  # one per process, in a daemon thread: it samples from now on, whether or not anyone looks
    else:
        sampler.start()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    title = " + ".join(p.name for p in providers)

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"title": title, **context})

    def jobs_context(state: str | None) -> dict[str, Any]:
        rows, total = views.table(providers, state)
        return {"jobs": rows, "total": total, "state": state, "states": views.STATES}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request, state: str | None = Query(None, max_length=32)) -> HTMLResponse:
        chosen = _state(state)
        return page(request, "index.html", **jobs_context(chosen), workers=views.workers(providers),
                    chain=views.chain(providers), sampler=describe(sampler))

    @app.get("/ui/jobs", response_class=HTMLResponse, include_in_schema=False)
    def jobs_fragment(request: Request, state: str | None = Query(None, max_length=32)) -> HTMLResponse:
        return page(request, "_jobs.html", **jobs_context(_state(state)))

    @app.get("/ui/resources", response_class=HTMLResponse, include_in_schema=False)
    def resources_fragment(request: Request) -> HTMLResponse:
        return page(request, "_resources.html", workers=views.workers(providers), chain=views.chain(providers))

    @app.get("/ui/chain", response_class=HTMLResponse, include_in_schema=False)
    def chain_fragment(request: Request) -> HTMLResponse:
        return page(request, "_chain.html", chain=views.chain(providers))

    @app.get("/ui/resources.json", include_in_schema=False)
    def resources_series() -> dict[str, Any]:
        """The last hour of samples, as columns: {"x": [unix s], "series": [{"label", "values"}], "source"}."""
        return {**views.columns(sampler.series()), "source": sampler.source, "now": time.time()}

    def found(job_id: int) -> tuple[Provider, dict[str, Any]]:
        hit = views.find_job(providers, job_id)
        if hit is None:
            raise HTTPException(status_code=404, detail=f"job {job_id} not seen")
        return hit

    @app.get("/job/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job_page(request: Request, job_id: int) -> HTMLResponse:
        provider, job = found(job_id)
        return page(request, "job.html", job=views.job_row(provider, job), bundle=_bundle_files(provider, job_id),
                    log=views.log_tail(provider, job_id))

    @app.get("/ui/job/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job_fragment(request: Request, job_id: int) -> HTMLResponse:
        provider, job = found(job_id)
        return page(request, "_job.html", job=views.job_row(provider, job), bundle=_bundle_files(provider, job_id),
                    log=views.log_tail(provider, job_id))

    @app.get("/ui/job/{job_id}/loss.json", include_in_schema=False)
    def loss(job_id: int) -> dict[str, Any]:
        """The trajectory's records as a loss curve: {"step": [...], "loss": [...], "final": bool}."""
        provider, job = found(job_id)
        points = views.trajectory(provider, job_id)
        return {"step": [p["step"] for p in points], "loss": [p["loss"] for p in points],
                "final": job["state"] in views.FINAL_STATES}

    return sampler


def _bundle_files(provider: Provider, job_id: int) -> list[dict[str, Any]]:
    """The bundle's files that exist, each linked to the API's `/jobs/{id}/result/{name}` (public: the output and its
    key are sealed to the client)."""
    from llmos_chain.results import BUNDLE_FILES

    path = views.bundle_dir(provider, job_id)
    if path is None:
        return []
    return [{"name": name, "url": f"/jobs/{job_id}/result/{name}", "bytes": (path / name).stat().st_size}
            for name in BUNDLE_FILES if (path / name).is_file()]
