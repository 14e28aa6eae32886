"""`llmos serve` on real jobs: the client audit, then the model over HTTP, decrypted in memory; a result that fails the
audit is never served. And `llmos bench serve --json`'s interface."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmos_chain.chain.devchain import ANVIL_IN_NODE_MODULES
from llmos_chain.crypto.keys import Keystore
from llmos_chain.recipe import Recipe
from llmos_chain.serving import ModelServer, ServeError, ask, audit_and_serve
from tests.helpers import ctrl_c_reaches_it
from tests.worker.conftest import anvil_provider
from tests.worker.test_runner import Setup, _recipe


def _submitted(setup: Setup, raw: bytes, recipe: Recipe | None = None) -> tuple[int, Path]:
    w = setup.world
    job_id = setup.job(raw, recipe)
    result = setup.run(job_id)
    w.act(w.operator).submit(job_id, result.attestation, result.signature)
    return job_id, result.bundle


@pytest.mark.anvil
@pytest.mark.skipif(not ANVIL_IN_NODE_MODULES.exists(), reason="needs anvil from `npm ci`")
def test_llmos_serve_audits_then_serves_and_refuses_a_result_that_fails(tmp_path: Path, intents_jsonl: bytes) -> None:
    with anvil_provider(tmp_path) as provider:
        setup = provider.setup
        job_id, bundle = _submitted(setup, intents_jsonl, _recipe())
        Keystore(tmp_path / "client-ks").save_encryption_key("client", setup.client_key)
        cmd = [sys.executable, "-m", "llmos_chain.cli.main", "serve", "--job", str(job_id), "--client-key", "client",
               "--from", str(tmp_path / "results"), "--port", "0", "--rpc", provider.node.url, "--deployment", str(provider.deployment),
               "--keystore", str(tmp_path / "client-ks"), "--json"]
        before = {p for p in Path(tempfile_dir()).iterdir()}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_it)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line, proc.stderr.read() if proc.stderr else ""
            started = json.loads(line)
            assert started["serving"] is True and started["audit"] == "pass" and started["task"] == "sequence-classification"
            url = started["url"]
            assert url.startswith("http://127.0.0.1:")
            health = httpx.get(url + "/health").json()
            labels = sorted({json.loads(row)["label"] for row in intents_jsonl.splitlines()})
            assert health["job"] == job_id and health["labels"] == labels  # the label names the job trained on
            answer = httpx.post(url + "/v1/classify", json={"text": "please refund order #55501", "top_k": 100}).json()
            assert sorted(r["label"] for r in answer["labels"]) == labels
            # no plaintext model was left anywhere while it serves: not in the job's files, not in the temporary directory
            assert not list(tmp_path.rglob("*.safetensors"))
            assert not [p for p in Path(tempfile_dir()).iterdir() if p not in before and p.name.startswith(("llmos-check", "llmos-serve"))]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)  # Ctrl-C stopped the model server too

        (bundle / "output.sealed").write_bytes(b"\0" + (bundle / "output.sealed").read_bytes()[1:])  # a corrupt output
        refused = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["serving"] is False and "failed the client audit" in refused.stderr


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


@pytest.mark.slow
def test_the_demo_jobs_minilm_output_served_over_http(setup: Setup, intents_jsonl: bytes) -> None:
    """The demo's first job (MiniLM + LoRA on the support intents), trained for real, audited, served, asked."""
    from llmos_chain.demo import JOBS, SENTENCES

    job_id, bundle = _submitted(setup, intents_jsonl, Recipe.model_validate(JOBS[0].recipe))
    report, server = audit_and_serve(setup.world.suite, job_id, bundle, setup.client_key)
    assert report.passed and server is not None and server.url is not None
    with server:
        answers: list[dict[str, Any]] = [ask(server.url, "/v1/classify", {"text": s}) for s in SENTENCES]
        assert [a["label"] for a in answers][:3] == ["order_status", "refund", "technical_issue"]
        assert all(a["score"] > 0.4 for a in answers[:3])
        with pytest.raises(ServeError, match="HTTP 400.*use POST /v1/classify"):
            ask(server.url, "/v1/generate", {"prompt": "hello"})
        assert server.checked["finite"] and server.checked["task"] == "sequence-classification"


def test_a_result_that_fails_the_client_audit_starts_no_server(setup: Setup, intents_jsonl: bytes) -> None:
    job_id, bundle = _submitted(setup, intents_jsonl)
    (bundle / "trajectory.jsonl").write_bytes((bundle / "trajectory.jsonl").read_bytes() + b"\n")
    report, server = audit_and_serve(setup.world.suite, job_id, bundle, setup.client_key)
    assert not report.passed and server is None


@pytest.mark.slow
def test_bench_serve_interface() -> None:
    proc = subprocess.run([sys.executable, "-m", "llmos_chain.cli.main", "bench", "serve", "--json", "--seconds", "0.5"],
                          capture_output=True, text=True, timeout=600, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert [r["clients"] for r in result["runs"]] == [1, 8, 32]
    for run in result["runs"]:
        assert {"clients", "rps", "p50_ms", "p99_ms", "bare_rps"} <= set(run)
        assert run["rps"] > 0 and run["bare_rps"] > 0 and 0 < run["p50_ms"] <= run["p99_ms"]
    # with 32 clients the server really batches: its forward passes answer several requests each
    assert result["runs"][0]["mean_batch"] == 1.0 and result["runs"][2]["mean_batch"] > 2


def test_the_model_server_refuses_what_is_not_an_output_and_says_why() -> None:
    recipe = _recipe().canonical_bytes().decode()
    with pytest.raises(ServeError, match="not an llmos output model"):
        ModelServer.start(recipe, b"\x00" * 64)
    with pytest.raises(ServeError, match="invalid recipe"):
        ModelServer.start('{"task": "sequence-classification"}', b"")
