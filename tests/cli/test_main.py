"""The `llmos` entry point: JSON interfaces other tools rely on, and clean failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ENTRY = [sys.executable, "-m", "llmos_chain.cli.main"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENTRY, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_bench_gas_json_interface() -> None:
    proc = _run("bench", "gas", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # the keys other checks read: one steady-state job's five steps per currency, withdraw apart, batched per job
    assert set(result["total"]) == {"eth", "erc20"}
    assert set(result["calls"]) == {"postJob", "assign", "grantAccess", "submitResult", "accept", "withdraw"}
    assert set(result["withdraw"]) == {"eth", "erc20"} and result["withdraw"]["eth"] == result["calls"]["withdraw"]
    assert result["batched"]["size"] == 10 and set(result["batched"]["steps"]) == {"postJobs", "assign", "grantAccess", "submitResult", "accept"}
    assert result["client_key"]["bytes"] == 1216  # the hybrid key the figures are for
    # the targets, against the measured figures
    assert result["total"]["eth"] <= 250_000 and result["total"]["erc20"] <= 270_000
    assert result["batched"]["per_job"]["eth"] <= 120_000
    # withdraw is outside the lifecycle total: an operator withdraws once for many jobs
    assert result["total"]["eth"] == sum(v for k, v in result["calls"].items() if k != "withdraw")
    # the peer figure is quoted, not measured: the output says where it comes from
    assert len(result["peer_gas_per_task"]) == 2 and "not measured" in result["peer_source"]


def test_unreachable_node_is_a_clean_error() -> None:
    proc = _run("deploy", "--rpc", "http://127.0.0.1:9", "--out", os.devnull)
    assert proc.returncode == 1
    assert "error: no JSON-RPC node answers at http://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_rpc_scheme_and_bad_key_are_clean_errors() -> None:
    proc = _run("deploy", "--rpc", "localhost:8545")
    assert proc.returncode == 1 and "not an RPC URL" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("deploy", "--rpc", "embedded", "--out", os.devnull, env={"LLMOS_PRIVATE_KEY": "0x1234"})
    assert proc.returncode == 1 and "LLMOS_PRIVATE_KEY is not a valid private key" in proc.stderr
    assert "0x1234" not in proc.stderr  # the key itself is never echoed


def test_usage_error_exits_two() -> None:
    proc = _run("deploy", "--collateral-per-gpu", "lots")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_help_and_version() -> None:
    assert "deploy" in _run("--help").stdout
    assert _run("--version").stdout.startswith("llmos-chain ")


def test_bench_crypto_json_interface() -> None:
    proc = _run("bench", "crypto", "--json", "--no-stream")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"open_gbps", "seal_gbps", "openssl_gbps", "stream_peak_mib"} <= set(result)
    assert result["open_gbps"] > 0 and result["seal_gbps"] > 0
    assert result["openssl_gbps"] is None or result["openssl_gbps"] > 0


#: What `llmos --help` and a usage error must not load: the chain, crypto and server libraries and the bindings, each
#: imported by the command that uses it (start-up, issue 16; `llmos bench startup` measures the time this saves).
#: typer itself may import pydantic to parse a value, so pydantic is not listed.
HEAVY = ("web3", "eth_account", "eth_utils", "eth_abi", "eth_keys", "cryptography", "aiohttp", "requests", "uvicorn",
         "fastapi", "highspy", "llmos_chain.chain", "llmos_chain.crypto.keys", "llmos_chain.crypto.stream",
         "llmos_chain.settings", "llmos_chain.datasets")


def _loaded_by(*args: str) -> tuple[int, list[str]]:
    code = (
        "import contextlib, io, runpy, sys\n"
        f"sys.argv = ['llmos', *{list(args)!r}]\n"
        "rc = 0\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    try:\n"
        "        runpy.run_module('llmos_chain.cli.main', run_name='__main__')\n"
        "    except SystemExit as exc:\n"
        "        rc = exc.code or 0\n"
        f"heavy = {HEAVY!r}\n"
        "print(rc, ' '.join(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    rc, _, loaded = out.strip().partition(" ")
    return int(rc), loaded.split()


def test_help_and_usage_errors_load_no_heavy_library() -> None:
    for args, expected_rc in ((["--help"], 0), (["job", "post", "--help"], 0), (["job", "status", "notanumber"], 2),
                              (["--version"], 0)):
        rc, loaded = _loaded_by(*args)
        assert rc == expected_rc, args
        assert loaded == [], f"`llmos {' '.join(args)}` imports {loaded}"


def test_dataset_cli_chunk_sizes_are_the_formats() -> None:
    # The CLI repeats them so that its --help needs no crypto library: they must stay the sealed format's own.
    from llmos_chain.cli import dataset
    from llmos_chain.crypto import stream

    assert (dataset.DEFAULT_CHUNK_SIZE, dataset.MAX_CHUNK_SIZE) == (stream.DEFAULT_CHUNK_SIZE, stream.MAX_CHUNK_SIZE)
