"""`llmos demo`: the marketplace end to end on the embedded chain."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from llmos_chain.cli.output import console, emit_json, err_console, table

if TYPE_CHECKING:
    from rich.table import Table


def _live_table(message: str, jobs: list[dict[str, Any]], started: float) -> Table:
    from rich.table import Table

    t = Table(title=f"{message} … {time.monotonic() - started:.0f} s", title_justify="left")
    for column in ("job", "what", "state", "worker"):
        t.add_column(column)
    for job in jobs:
        t.add_row(str(job["id"]), job["title"], job["state"], job["worker"])
    return t


def _fmt(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def demo(
    rpc: str = typer.Option("embedded", "--rpc", help="'embedded' (default, in-process eth-tester) or a dev node's URL (anvil, e.g. from `llmos devnet`)."),
    workdir: Path = typer.Option(None, "--workdir", help="Keep keystores, sealed data, results and logs here (default: a temporary directory)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with every job."),
    serve: bool = typer.Option(False, "--serve", help="Serve the dashboard (both providers' coordinators on one page) from "
                               "the start, and keep it and job 1's served model up after the demo until Ctrl-C."),
    port: int = typer.Option(8700, "--port", min=1, max=65535, help="The dashboard's port with --serve (on 127.0.0.1)."),
) -> None:
    """Run the whole marketplace once: providers, a sealed dataset, three fine-tuning jobs, grants, results, audits, payouts."""
    from rich.live import Live

    from llmos_chain.chain.connect import EMBEDDED, connect
    from llmos_chain.demo import run_demo
    from llmos_chain.errors import ConfigError

    # Checked before the demo creates its work directory: a bad flag leaves nothing behind.
    if workdir is not None:
        existing = workdir
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"--workdir {workdir}: {existing} is not a directory")
    if rpc != EMBEDDED:
        connect(rpc)  # a URL that is not one, or a node that does not answer, is an error now
    show = emit_json if json_out else _print_summary
    if serve:
        _run_serving(rpc, workdir, port, show, json_out)
        return
    if json_out:
        emit_json(run_demo(rpc, workdir))
        return
    started = time.monotonic()
    with Live(console=err_console, refresh_per_second=4, transient=True) as live:
        result = run_demo(rpc, workdir, progress=lambda message, jobs: live.update(_live_table(message, jobs, started)))
    _print_summary(result)


def _run_serving(rpc: str, workdir: Path | None, port: int, show: Any, quiet: bool) -> None:
    """The demo with its dashboard up from the start (the port is taken first) and kept up after it until Ctrl-C."""
    from llmos_chain.api import create_app
    from llmos_chain.dashboard import Provider
    from llmos_chain.dashboard.server import HOST, bind, serve_in_thread
    from llmos_chain.demo import run_demo

    sock = bind(port)
    url = f"http://{HOST}:{port}/"

    def on_ready(coordinators: list[tuple[str, Any]]) -> None:
        # one dashboard for both providers; its API routes (/jobs, /metrics…) are the first coordinator's
        providers = [Provider(name, c) for name, c in coordinators]
        serve_in_thread(create_app(coordinators[0][1], dashboard=providers), sock)
        err_console.print(f"dashboard: {url}")

    def hold(result: dict[str, Any], step: Any) -> None:
        show(result)
        served = result.get("serving") or {}
        err_console.print(f"dashboard up at {url} (both providers); job {served.get('job')}'s model served at {served.get('url')} "
                          f"(POST /v1/classify); Ctrl-C stops")
        try:
            while True:
                step()
                time.sleep(1.0)
        except KeyboardInterrupt:
            err_console.print("stopped")

    progress = None if quiet else (lambda message, jobs: err_console.print(f"{message} …"))
    try:
        run_demo(rpc, workdir, progress=_once(progress) if progress else None, on_ready=on_ready, hold=hold)
    finally:
        sock.close()


def _once(progress: Any) -> Any:
    """A progress callback that prints each message once (the demo repeats them while it waits)."""
    seen: set[str] = set()

    def report(message: str, jobs: list[dict[str, Any]]) -> None:
        if message not in seen:
            seen.add(message)
            progress(message, jobs)

    return report


def _print_summary(result: dict[str, Any]) -> None:
    rows, gas_rows = [], []
    steps = ("post", "assign", "grant", "submit", "accept")
    for j in result["jobs"]:
        arrow = "↑" if j["higher_is_better"] == (j["metric_after"] > j["metric_before"]) else "✗"
        rows.append([j["id"], j["title"], j["state"], j["worker"], j["currency"],
                     f"{j['metric']} {_fmt(j['metric_before'])} → {_fmt(j['metric_after'])} {arrow}",
                     "[green]pass[/]" if j["audit"] == "pass" else "[bold red]FAIL[/]"])
        gas_rows.append([j["id"], *(j["gas"][k] for k in steps), sum(j["gas"].values())])
    table(f"Jobs on chain {result['chain_id']} (dataset {result['dataset']['id']})",
          ["job", "what", "state", "worker", "paid", "metric before → after", "audit"], rows)
    table("Gas per step", ["job", *steps, "total"], gas_rows)
    for w in result["withdrawals"]:
        console.print(f"{w['provider']} withdrew its {w['token']} earnings (gas {w['gas']:,})")
    predictions = result["predictions"]
    console.print(f"\nThe client audited job {predictions['job']}'s result, served its model at {predictions['served_at']} "
                  "(decrypted in memory) and asked it over HTTP (POST /v1/classify):")
    for answer in predictions["answers"]:
        console.print(f"  {answer['text']!r} → [bold]{answer['label']}[/] ({answer['score']:.2f})")
    console.print(f"\ndone in {result['wall_s']} s")
