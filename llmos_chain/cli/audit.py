"""`llmos audit JOB`: a verdict per check, from chain events and the public artifacts."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import typer

from llmos_chain.cli.common import DEPLOYMENT, JSON, KEYSTORE, RPC, UINT256_MAX, keystore, open_suite
from llmos_chain.cli.output import console, emit_json, table


def audit(
    job: int = typer.Argument(..., min=0, max=UINT256_MAX, help="Job id."),
    bundle: Path = typer.Option(None, "--bundle", help="The job's result bundle directory (sealed output, metrics, trajectory, attestation)."),
    source: str = typer.Option(None, "--from", help="Fetch the bundle from a coordinator's API URL or results directory instead."),
    data_key_id: str = typer.Option(None, "--data-key-id", help="Data owners: also decrypt the dataset and check its registered root."),
    client_key: str = typer.Option(None, "--client-key", help="Clients: the client audit — also decrypt the output with this key "
                                   "(its name in the keystore), check it against the attested hashes, load it on its base model and run it."),
    keystore_dir: Path = KEYSTORE,
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    json_out: bool = JSON,
) -> None:
    """Rebuild a job's history from chain events and check every hash and signature; exits 1 if any check fails.

    Without keys this is the public audit anyone can run; `--client-key` makes it the client audit (what a client
    should pass before accepting), `--data-key-id` adds the owner's dataset check."""
    from llmos_chain.audit import audit_job, client_audit
    from llmos_chain.errors import ConfigError

    _, _, suite = open_suite(rpc, deployment)
    data_key = keystore(keystore_dir).load_data_key(data_key_id) if data_key_id else None
    enc_key = keystore(keystore_dir).load_encryption_key(client_key) if client_key else None
    if source is not None and bundle is not None:
        raise ConfigError("give --bundle or --from, not both")
    if enc_key is not None and source is None and bundle is None:
        raise ConfigError("the client audit needs the result: give --bundle or --from")
    with tempfile.TemporaryDirectory(prefix="llmos-audit-") as tmp:
        if source is not None:
            from llmos_chain.results import fetch_bundle

            bundle = fetch_bundle(source, job, Path(tmp))
        if bundle is not None and not bundle.is_dir():
            raise ConfigError(f"--bundle {bundle} is not a directory")
        report = client_audit(suite, job, bundle, enc_key, data_key) if enc_key is not None and bundle is not None \
            else audit_job(suite, job, bundle, data_key)
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
