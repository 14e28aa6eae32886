"""`llmos serve`: the client audit of a job's result, then its model behind an HTTP API, decrypted in memory only."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import typer

from llmos_chain.cli.common import DEPLOYMENT, JSON, KEYSTORE, RPC, UINT256_MAX, keystore, open_suite
from llmos_chain.cli.output import console, emit_json, err_console, table


def serve(
    job: int = typer.Option(..., "--job", min=0, max=UINT256_MAX, help="The job whose model to serve."),
    client_key: str = typer.Option(..., "--client-key", help="Your encryption key's name (the one the job was posted with)."),
    source: str = typer.Option("results", "--from", help="Result source: the coordinator's API URL or its results directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (localhost by default: the API has no authentication)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, max=1024, help="Most concurrent requests answered by one forward pass."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, max=1000, help="How long a batch waits for more requests."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads of the server (default: one per core)."),
    keystore_dir: Path = KEYSTORE,
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    json_out: bool = JSON,
) -> None:
    """Serve a job's fine-tuned model over HTTP after the client audit passes; runs until Ctrl-C.

    Fetches the job's result bundle, runs every check of `llmos audit --client-key` (the output's check on the very
    model that will be served), and serves it: POST /v1/classify, /v1/tag or /v1/generate (by the model's task),
    GET /health, /metrics, and the OpenAPI docs at /docs. With --json, one line once it listens (url, task). The decrypted model only ever lives in memory: it reaches
    the model server (`python -m worker serve`) through a pipe, never a file."""
    from llmos_chain.errors import LlmosError
    from llmos_chain.results import fetch_bundle
    from llmos_chain.serving import audit_and_serve

    key = keystore(keystore_dir).load_encryption_key(client_key)
    _, _, suite = open_suite(rpc, deployment)
    with tempfile.TemporaryDirectory(prefix="llmos-serve-") as tmp:
        bundle = fetch_bundle(source, job, Path(tmp))
        if not json_out:
            err_console.print(f"job {job}: auditing the result and loading the model …")
        report, server = audit_and_serve(suite, job, bundle, key, host=host, port=port, max_batch=max_batch,
                                         max_wait_ms=max_wait_ms, threads=threads)
    if server is None:
        failed = [c for c in report.checks if not c.ok]
        if json_out:
            emit_json({"job": job, "serving": False, "audit": report.to_json()})
        else:
            table(f"Job {job}: the client audit failed; not serving", ["check", "detail"], [[c.name, c.detail] for c in failed])
        raise LlmosError(f"job {job}'s result failed the client audit ({len(failed)} check(s)): not serving it")
    url = server.url
    task = server.checked.get("task")
    if json_out:
        # one line, at once: a script reads it while the server runs
        print(json.dumps({"job": job, "serving": True, "url": url, "task": task, "docs": f"{url}/docs", "audit": "pass"}), flush=True)
    else:
        endpoint = {"sequence-classification": "/v1/classify", "token-classification": "/v1/tag", "causal-lm": "/v1/generate"}.get(
            str(task), "/v1/…")
        console.print(f"job {job}: the client audit passed; serving its {task} model at {url} (POST {endpoint}; docs {url}/docs)")
        console.print("Ctrl-C stops it.")
    sys.stdout.flush()
    try:
        code = server.wait()
    except KeyboardInterrupt:
        server.close()
        return
    finally:
        server.close()
    if code != 0:
        raise LlmosError(f"the model server stopped with exit code {code}")
