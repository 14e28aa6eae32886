"""`llmos verify`: replay intervals of a job's training and say whether the worker did what it attested."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from llmos_chain.cli.common import DEPLOYMENT, JSON, KEYSTORE, RPC, UINT256_MAX, keystore, open_suite
from llmos_chain.cli.output import console, emit_json, err_console, table


def verify(
    job: int = typer.Argument(..., min=0, max=UINT256_MAX, help="The job to verify."),
    key_name: str = typer.Option(..., "--key", help="The verifier's encryption key (name in the keystore): the one the market's "
                                 "arbiter named with setArbiterKey, which the owner's grant and the checkpoints are sealed to."),
    source: str = typer.Option("results", "--from", help="Result source: the coordinator's API URL or its results directory."),
    interval: list[int] = typer.Option(None, "--interval", min=0, help="Replay this interval (0-based; repeatable). "
                                       "Default: the first and the last, then a bisection to the first that diverges."),
    every: bool = typer.Option(False, "--all", help="Replay every interval (as long as the whole training)."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads of the replay (default: one per core)."),
    timeout_s: float = typer.Option(3600.0, "--timeout", min=1, help="Give up after this many seconds."),
    keystore_dir: Path = KEYSTORE,
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    json_out: bool = JSON,
) -> None:
    """Replay a job's training from its sealed checkpoints and compare with the worker's trajectory.

    Needs the data owner's verifier grant (`VerifierGranted`, sent for a disputed job) to the key given, and the job's
    result bundle with its checkpoints. Exit 0: every replayed interval agrees; 1: an interval diverges (it is named,
    with the recorded and the replayed weights hashes); 2: the verification could not be done (no grant, wrong key)."""
    from llmos_chain.errors import LlmosError, VerificationError
    from llmos_chain.results import fetch_bundle, fetch_checkpoints
    from llmos_chain.verification import verify_job

    key = keystore(keystore_dir).load_encryption_key(key_name)
    _, _, suite = open_suite(rpc, deployment)

    def progress(event: dict) -> None:
        if json_out:
            return
        if event.get("event") == "setup":
            err_console.print(f"job {job}: data and model ready in {event['seconds']:.1f} s; {event['intervals']} interval(s)")
        elif event.get("event") == "replay":
            verdict = "agrees" if event["agrees"] else f"diverges at interval {event['diverging']}"
            err_console.print(f"  interval {event['interval']} (from record {event['start_record']}, {event['steps']} steps, "
                              f"{event['seconds']:.1f} s): {verdict}")

    with tempfile.TemporaryDirectory(prefix="llmos-verify-") as tmp:
        try:
            bundle = fetch_bundle(source, job, Path(tmp) / "bundle")
            fetch_checkpoints(source, job, bundle)
            finding = verify_job(suite, job, bundle, key, Path(tmp) / "work", interval or None, every, timeout_s, threads, progress)
        except VerificationError as exc:
            if json_out:
                emit_json({"job": job, "verified": False, "error": str(exc)})
            else:
                err_console.print(f"error: {exc}")
            raise typer.Exit(2) from None
        except LlmosError:
            raise
    if json_out:
        emit_json(finding.to_json())
    else:
        rows = [[str(r["interval"]), str(r["start_record"]), str(r["steps"]), f"{r['seconds']:.2f}",
                 "agrees" if r["agrees"] else f"diverges at {r['diverging']}"] for r in finding.replays]
        if rows:
            table(f"Job {job}: replays", ["interval", "from record", "steps", "seconds", "result"], rows)
        if finding.agrees:
            console.print(f"job {job}: every replayed interval agrees with the worker's trajectory ({finding.detail})")
        else:
            where = f"interval {finding.interval}" if finding.interval is not None else "the bundle"
            console.print(f"job {job}: {where} diverges: {finding.detail}")
            if finding.expected or finding.replayed:
                console.print(f"  recorded weights {finding.expected or '-'}\n  replayed weights {finding.replayed or '-'}")
    if not finding.agrees:
        raise typer.Exit(1)
