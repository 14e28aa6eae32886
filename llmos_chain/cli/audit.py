"""`llmos audit JOB`: a verdict per check, from chain events and the public artifacts."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import typer

from llmos_chain.cli.common import DEPLOYMENT, JSON, KEYSTORE, RPC, keystore, open_suite
from llmos_chain.cli.output import console, emit_json, table


def audit(
    job: int = typer.Argument(..., help="Job id."),
    bundle: Path = typer.Option(None, "--bundle", help="The job's result bundle directory (sealed output, metrics, trajectory, attestation)."),
    source: str = typer.Option(None, "--from", help="Fetch the bundle from a coordinator's API URL or results directory instead."),
    data_key_id: str = typer.Option(None, "--data-key-id", help="Data owners: also decrypt the dataset and check its registered root."),
    keystore_dir: Path = KEYSTORE,
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    json_out: bool = JSON,
) -> None:
    """Rebuild a job's history from chain events and check every hash and signature; exits 1 if any check fails."""
    from llmos_chain.audit import audit_job

    _, _, suite = open_suite(rpc, deployment)
    data_key = keystore(keystore_dir).load_data_key(data_key_id) if data_key_id else None
    if source is not None and bundle is not None:
        from llmos_chain.errors import ConfigError

        raise ConfigError("give --bundle or --from, not both")
    with tempfile.TemporaryDirectory(prefix="llmos-audit-") as tmp:
        if source is not None:
            from llmos_chain.results import fetch_bundle

            bundle = fetch_bundle(source, job, Path(tmp))
        report = audit_job(suite, job, bundle, data_key)
    if json_out:
        emit_json(report.to_json())
    else:
        table(f"Job {job} ({report.state}): history", ["block", "event", "tx"],
              [[h["block"], h["event"], h["tx"][:18] + "…"] for h in report.history])
        table(f"Job {job}: checks", ["check", "verdict", "detail"],
              [[c.name, "[green]pass[/]" if c.ok else "[bold red]FAIL[/]", c.detail] for c in report.checks])
        console.print(f"verdict: {'[green]pass[/]' if report.passed else '[bold red]fail[/]'}")
    if not report.passed:
        sys.exit(1)
